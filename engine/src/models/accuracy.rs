//! The accuracy verdict's measures: a quantized model's outputs against the fp16 model's.
//!
//! - text: cosine similarity of each sentence embedding to fp16's; nearest-neighbour agreement
//!   (each sentence's most similar other sentence is the one fp16 picks).
//! - llm: top-1 next-token agreement under teacher forcing; perplexity of the passage; where a
//!   greedy continuation first differs.
//! - both: a histogram of the per-output error.

use serde::{Deserialize, Serialize};

/// Cosine similarity, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

/// For each embedding, the index of its most similar other embedding (ties: the lowest index).
pub fn nearest_neighbours(e: &[Vec<f32>]) -> Vec<usize> {
    (0..e.len())
        .map(|i| {
            (0..e.len())
                .filter(|&j| j != i)
                .map(|j| (j, cosine(&e[i], &e[j])))
                .fold((usize::MAX, f64::NEG_INFINITY), |best, (j, c)| if c > best.1 { (j, c) } else { best })
                .0
        })
        .collect()
}

/// The index of the largest logit (the first, on ties); NaN is never the largest.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
}

/// `-log p(target)` under softmax of `row`, in f64 (log-sum-exp with the maximum subtracted).
pub fn nll(row: &[f32], target: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    lse - row[target] as f64
}

/// Perplexity of `tokens[1..]` given `logits` (`tokens.len() x vocab`) under teacher forcing.
pub fn perplexity(logits: &[f32], vocab: usize, tokens: &[u32]) -> f64 {
    let n = tokens.len().saturating_sub(1).max(1);
    let sum: f64 = (0..tokens.len().saturating_sub(1))
        .map(|i| nll(&logits[i * vocab..(i + 1) * vocab], tokens[i + 1] as usize))
        .sum();
    (sum / n as f64).exp()
}

/// The fraction of positions whose top-1 token is the same in `a` and `b`.
pub fn top1_agreement(a: &[f32], b: &[f32], vocab: usize) -> f64 {
    let rows = a.len() / vocab;
    let same = a.chunks_exact(vocab).zip(b.chunks_exact(vocab)).filter(|(x, y)| argmax(x) == argmax(y)).count();
    same as f64 / rows.max(1) as f64
}

/// The index of the first differing token, `None` when the sequences agree over their common length.
pub fn first_divergence(a: &[u32], b: &[u32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Counts of `|a - b| / scale` in decades: `< 1e-6`, `< 1e-5`, ..., `< 1`, `>= 1` (and NaN apart).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorHistogram {
    /// Upper edges of the bins; the last bin is everything at or above the last edge.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub nan: u64,
    #[serde(with = "webq_conformance::number")]
    pub max: f64,
}

impl ErrorHistogram {
    /// The error of each of `a` against `b`, relative to `scale` (for example the RMS of `b`).
    pub fn of(a: &[f32], b: &[f32], scale: f64) -> ErrorHistogram {
        let edges = vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        let mut h = ErrorHistogram { counts: vec![0; edges.len() + 1], edges, nan: 0, max: 0.0 };
        for (&x, &y) in a.iter().zip(b) {
            let e = (x as f64 - y as f64).abs() / scale.max(f64::MIN_POSITIVE);
            if e.is_nan() {
                h.nan += 1;
                continue;
            }
            h.max = h.max.max(e);
            let bin = h.edges.iter().position(|&edge| e < edge).unwrap_or(h.edges.len());
            h.counts[bin] += 1;
        }
        h
    }
}

/// Root mean square, in f64.
/// Word error rate of `hyp` against `reference`: word-level edits (substitutions, insertions,
/// deletions) over the reference's words, after lowercasing and dropping punctuation (a
/// transcript's "Stella." is the sentence's "stella"). 0 for two empty texts, 1 per extra word
/// against an empty reference.
pub fn word_error_rate(hyp: &str, reference: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').flat_map(char::to_lowercase).collect())
            .filter(|w: &String| !w.is_empty())
            .collect()
    };
    let (h, r) = (words(hyp), words(reference));
    // One row of the edit-distance table at a time.
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let next = (diag + usize::from(rw != hw)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[h.len()] as f64 / r.len().max(1) as f64
}

pub fn rms(v: &[f32]) -> f64 {
    (v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn measures_of_known_values() {
        assert_abs_diff_eq!(cosine(&[1.0, 0.0], &[1.0, 1.0]), std::f64::consts::FRAC_1_SQRT_2, epsilon = 1e-12);
        let e = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0]];
        assert_eq!(nearest_neighbours(&e), [1, 0, 1]);
        assert_eq!(argmax(&[1.0, f32::NAN, 3.0, 3.0]), 2);
        // Uniform logits over 4 tokens: perplexity 4.
        let logits = [0.0f32; 12];
        assert_abs_diff_eq!(perplexity(&logits, 4, &[0, 1, 2]), 4.0, epsilon = 1e-12);
        assert_abs_diff_eq!(nll(&[1000.0, 0.0], 0), 0.0, epsilon = 1e-12);
        assert_eq!(top1_agreement(&[1.0, 0.0, 0.0, 1.0], &[1.0, 0.0, 1.0, 0.0], 2), 0.5);
        assert_eq!(first_divergence(&[1, 2, 3], &[1, 2, 4]), Some(2));
        assert_eq!(first_divergence(&[1, 2], &[1, 2, 4]), None);
        let h = ErrorHistogram::of(&[1.0, 1.5, f32::NAN, 3.0], &[1.0, 1.0, 1.0, 1.0], 1.0);
        assert_eq!((h.counts[0], h.counts[6], h.counts[7], h.nan, h.max), (1, 1, 1, 1, 2.0));
    }

    #[test]
    fn word_error_rate_counts_edits_over_the_reference_words() {
        assert_eq!(word_error_rate(" Please call Stella.", "Please call Stella."), 0.0);
        assert_eq!(word_error_rate(" Please call settler.", "Please call Stella."), 1.0 / 3.0);
        // A deletion and an insertion: "the" dropped, "very" added.
        assert_eq!(word_error_rate("rice is very often served", "rice is often served the"), 0.4);
        assert_eq!(word_error_rate("", "two words"), 1.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("it's", "It's!"), 0.0);
    }
}
