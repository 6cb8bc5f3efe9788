//! Scaled-dot-product attention on the CPU (f64 inside): padding and causal masks, grouped-query
//! heads, and the KV cache a decoder appends to.
//!
//! Layouts: queries are `tq x (heads * head_dim)`, keys and values `tk x (kv_heads * head_dim)`;
//! query head `h` reads key/value head `h / (heads / kv_heads)` (llama's grouping).

/// Which keys each query may see.
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a> {
    /// Every query sees key `j` where `mask[j] == 1` (BERT's attention mask).
    Padding(&'a [u32]),
    /// Query `i` stands at position `offset + i` and sees keys `0..=offset + i` (a decoder).
    Causal { offset: usize },
}

impl Mask<'_> {
    pub fn allows(&self, i: usize, j: usize) -> bool {
        match *self {
            Mask::Padding(m) => m[j] == 1,
            Mask::Causal { offset } => j <= offset + i,
        }
    }
}

/// One past the last of `tk` keys that `allows` lets query `i` see (0 if none): the keys after it
/// need no score (a causal mask hides most of them).
pub fn visible_end(tk: usize, i: usize, allows: impl Fn(usize, usize) -> bool) -> usize {
    (0..tk).rposition(|j| allows(i, j)).map_or(0, |j| j + 1)
}

/// The head counts of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// `softmax(q k^T / sqrt(head_dim) + mask) v`, per head.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], tq: usize, tk: usize, h: Heads, mask: Mask) -> Vec<f32> {
    let group = h.heads / h.kv_heads.max(1);
    attention_with(q, k, v, (tq, tk), h, |i, j| mask.allows(i, j), |head| head / group)
}

/// [`attention`] with the visibility of key `j` to query `i` and the key/value head of each query
/// head given (planted faults change them).
pub fn attention_with(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (tq, tk): (usize, usize),
    h: Heads,
    allows: impl Fn(usize, usize) -> bool,
    kv_head: impl Fn(usize) -> usize,
) -> Vec<f32> {
    let (qw, kw, d) = (h.q_width(), h.kv_width(), h.head_dim);
    assert!(q.len() == tq * qw && k.len() == tk * kw && v.len() == tk * kw, "attention: shapes");
    assert!(h.heads % h.kv_heads == 0, "attention: heads not a multiple of kv heads");
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; tq * qw];
    let mut p = vec![0f64; tk];
    let mut acc = vec![0f64; d];
    let mut qd = vec![0f64; d];
    // One key/value head's rows widened to f64 once, where every query of every head in its group
    // reads them (the products are of the same values: the conversion is exact).
    let (mut kh, mut vh) = (vec![0f64; tk * d], vec![0f64; tk * d]);
    let mut widened = None;
    for head in 0..h.heads {
        let kvh = kv_head(head);
        if widened != Some(kvh) {
            widen_head(&mut kh, k, kw, kvh * d..(kvh + 1) * d);
            widen_head(&mut vh, v, kw, kvh * d..(kvh + 1) * d);
            widened = Some(kvh);
        }
        for i in 0..tq {
            for (a, &x) in qd.iter_mut().zip(&q[i * qw + head * d..][..d]) {
                *a = x as f64;
            }
            // Scores up to the last visible key only (a causal mask hides the rest, as the old
            // loop skipped them); every hidden key's weight is exp(-inf) = 0, as before.
            let end = visible_end(tk, i, &allows);
            scores(&mut p[..end], &qd, &kh[..end * d], scale);
            p[end..].fill(f64::NEG_INFINITY);
            let mut max = f64::NEG_INFINITY;
            for (j, pj) in p[..end].iter_mut().enumerate() {
                if !allows(i, j) {
                    *pj = f64::NEG_INFINITY;
                }
                max = max.max(*pj);
            }
            if max == f64::NEG_INFINITY {
                continue; // no key visible: a zero output, as softmax of an all-masked row
            }
            let mut sum = 0.0;
            for pj in p.iter_mut() {
                *pj = (*pj - max).exp();
                sum += *pj;
            }
            weighted_values(&mut acc, &p, &vh);
            let o = &mut out[i * qw + head * d..][..d];
            for (oc, &a) in o.iter_mut().zip(&acc) {
                *oc = (a / sum) as f32;
            }
        }
    }
    out
}

/// Columns `cols` of every row of `kw` values in `x`, as f64 rows one after another into `into`.
fn widen_head(into: &mut [f64], x: &[f32], kw: usize, cols: std::ops::Range<usize>) {
    for (row, src) in into.chunks_exact_mut(cols.len()).zip(x.chunks_exact(kw)) {
        for (a, &b) in row.iter_mut().zip(&src[cols.clone()]) {
            *a = b as f64;
        }
    }
}

/// `sum_j p[j] v_j` into `acc` (`v`: rows of `acc.len()`): each output sums its products in key
/// order from -0.0 (an iterator's sum, as one column at a time did: the same bits); a key at a
/// time, the outputs' sums are independent lanes.
fn weighted_values(acc: &mut [f64], p: &[f64], v: &[f64]) {
    acc.fill(-0.0);
    for (&pj, vj) in p.iter().zip(v.chunks_exact(acc.len())) {
        for (a, &x) in acc.iter_mut().zip(vj) {
            *a += pj * x;
        }
    }
}

/// Keys a pass of [`scores`]: that many chains of additions overlap. With 8, ViT and Whisper's
/// encoder took 0.96-0.99x the time they took with 4 in Chromium and Firefox (medians of three
/// rounds, bench/2026-12-07-attention-loops.txt).
const KEYS: usize = 8;

/// `q . k_j * scale` into `p[j]` for every key `j` (`k`: rows of `q.len()`), each dot product one
/// f64 sum in the order of the head's dimensions from -0.0 (an iterator's sum: the same bits),
/// [`KEYS`] keys at a time.
fn scores(p: &mut [f64], q: &[f64], k: &[f64], scale: f64) {
    let d = q.len();
    let whole = p.len() / KEYS * KEYS;
    let (blocks, rest) = p.split_at_mut(whole);
    for (out, keys) in blocks.chunks_exact_mut(KEYS).zip(k.chunks_exact(KEYS * d)) {
        let mut s = [-0.0f64; KEYS];
        for (c, &a) in q.iter().enumerate() {
            for (r, sr) in s.iter_mut().enumerate() {
                *sr += a * keys[r * d + c];
            }
        }
        for (o, sr) in out.iter_mut().zip(s) {
            *o = sr * scale;
        }
    }
    for (pj, kj) in rest.iter_mut().zip(k[whole * d..].chunks_exact(d)) {
        *pj = q.iter().zip(kj).map(|(&a, &b)| a * b).sum::<f64>() * scale;
    }
}

/// Keys and values of every position seen so far, per layer.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    width: usize,
}

impl KvCache {
    pub fn new(layers: usize, kv_width: usize) -> KvCache {
        KvCache { layers: vec![(Vec::new(), Vec::new()); layers], width: kv_width }
    }

    /// Positions cached (the next token's position).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.len() / self.width.max(1))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the cache holds (keys and values of every layer, f32).
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| (k.len() + v.len()) * 4).sum()
    }

    /// Values a position holds per layer (keys, and as many values).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Overwrites the last cached position of `layer` (planted faults write to the wrong slot).
    pub fn overwrite_last(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let (ks, vs) = &mut self.layers[layer];
        let (kl, vl) = (ks.len(), vs.len());
        ks[kl - k.len()..].copy_from_slice(k);
        vs[vl - v.len()..].copy_from_slice(v);
    }

    /// Appends `k`, `v` (`t x kv_width`) to `layer`.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let (ks, vs) = &mut self.layers[layer];
        ks.extend_from_slice(k);
        vs.extend_from_slice(v);
    }

    /// Every cached key and value of `layer`.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        let (ks, vs) = &self.layers[layer];
        (ks, vs)
    }
}

/// Unmasked attention over each input of a batch on its own (the images of a ViT, the utterances of
/// Whisper's encoder): `q`, `k`, `v` hold inputs of `t` rows one after another.
pub async fn attend_each<B: super::exec::Backend>(
    exec: &mut B,
    (q, k, v): (&[f32], &[f32], &[f32]),
    t: usize,
    h: Heads,
) -> Result<Vec<f32>, super::ModelError> {
    let per = t * h.q_width();
    let all = vec![1u32; t];
    let mut ctx = Vec::with_capacity(q.len());
    for i in 0..q.len() / per.max(1) {
        let r = i * per..(i + 1) * per;
        ctx.extend(exec.attention(&q[r.clone()], &k[r.clone()], &v[r], t, t, h, Mask::Padding(&all)).await?);
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    const ONE: Heads = Heads { heads: 1, kv_heads: 1, head_dim: 2 };

    #[test]
    fn one_visible_key_returns_its_value() {
        let (q, k, v) = ([1.0, 0.0, 1.0, 0.0], [5.0, 1.0, -3.0, 2.0], [10.0, 20.0, 30.0, 40.0]);
        let o = attention(&q, &k, &v, 2, 2, ONE, Mask::Causal { offset: 0 });
        assert_eq!(o[..2], [10.0, 20.0], "the first query sees only the first key");
        // The second sees both: weights softmax([5, -3] / sqrt 2).
        let w0 = 1.0 / (1.0 + (-8.0 / 2f64.sqrt()).exp());
        assert_abs_diff_eq!(o[2] as f64, 10.0 * w0 + 30.0 * (1.0 - w0), epsilon = 1e-5);
        let o = attention(&q, &k, &v, 2, 2, ONE, Mask::Padding(&[0, 1]));
        assert_eq!(o, [30.0, 40.0, 30.0, 40.0], "a padded key is never seen");
    }

    #[test]
    fn grouped_heads_share_their_kv_head() {
        let h = Heads { heads: 4, kv_heads: 2, head_dim: 1 };
        let q = [1.0; 4];
        let (k, v) = ([0.0, 0.0], [7.0, -7.0]);
        let o = attention(&q, &k, &v, 1, 1, h, Mask::Causal { offset: 0 });
        assert_eq!(o, [7.0, 7.0, -7.0, -7.0]);
    }

    /// The attention this module computed before its loops were reordered for speed: one output
    /// column at a time, each score an iterator's sum. The reordered code must give its bits.
    fn column_at_a_time(q: &[f32], k: &[f32], v: &[f32], (tq, tk): (usize, usize), h: Heads, mask: Mask) -> Vec<f32> {
        let (qw, kw, d) = (h.q_width(), h.kv_width(), h.head_dim);
        let group = h.heads / h.kv_heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0f32; tq * qw];
        let mut p = vec![0f64; tk];
        for head in 0..h.heads {
            let kvh = head / group;
            for i in 0..tq {
                let qi = &q[i * qw + head * d..][..d];
                let mut max = f64::NEG_INFINITY;
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj = if mask.allows(i, j) {
                        let kj = &k[j * kw + kvh * d..][..d];
                        qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                    } else {
                        f64::NEG_INFINITY
                    };
                    max = max.max(*pj);
                }
                if max == f64::NEG_INFINITY {
                    continue;
                }
                let mut sum = 0.0;
                for pj in p.iter_mut() {
                    *pj = (*pj - max).exp();
                    sum += *pj;
                }
                let o = &mut out[i * qw + head * d..][..d];
                for (c, oc) in o.iter_mut().enumerate() {
                    let acc: f64 = p.iter().enumerate().map(|(j, &pj)| pj * v[j * kw + kvh * d + c] as f64).sum();
                    *oc = (acc / sum) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn reordered_loops_give_the_bits_of_a_column_at_a_time() {
        let mut rng = crate::seeded::Rng::new(7);
        let mut cases = 0;
        for (tq, tk, heads, kv_heads, head_dim) in
            [(1, 1, 1, 1, 1), (3, 5, 2, 1, 3), (7, 7, 4, 2, 8), (5, 9, 6, 6, 64), (2, 13, 3, 3, 5), (16, 33, 2, 2, 32)]
        {
            let h = Heads { heads, kv_heads, head_dim };
            for spread in [1.0f32, 30.0] {
                // Zeros of both signs among the values, as a model's padding and ReLUs give.
                let mut draw = |n: usize| -> Vec<f32> {
                    (0..n)
                        .map(|_| match rng.next_u64() % 8 {
                            0 => 0.0,
                            1 => -0.0,
                            _ => rng.normal() * spread,
                        })
                        .collect()
                };
                let (q, k, v) = (draw(tq * h.q_width()), draw(tk * h.kv_width()), draw(tk * h.kv_width()));
                let padding: Vec<u32> = (0..tk).map(|j| u32::from(j % 3 != 1)).collect();
                let none = vec![0u32; tk];
                for mask in [
                    Mask::Padding(&padding),
                    Mask::Padding(&none),
                    Mask::Causal { offset: 0 },
                    Mask::Causal { offset: 2 },
                ] {
                    let want = column_at_a_time(&q, &k, &v, (tq, tk), h, mask);
                    let got = attention(&q, &k, &v, tq, tk, h, mask);
                    let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "tq {tq} tk {tk} {h:?} spread {spread} {mask:?}");
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 48);
    }

    /// The two loops on their own, in f64 where a changed order of additions shows (rounded to
    /// f32, most such changes vanish).
    #[test]
    fn scores_and_weighted_values_sum_in_the_iterators_order() {
        let mut rng = crate::seeded::Rng::new(11);
        let (tk, kw, d, off) = (23, 40, 16, 8);
        let k: Vec<f32> = (0..tk * kw).map(|_| rng.normal() * 5.0).collect();
        let q: Vec<f32> = (0..d).map(|_| rng.normal() * 5.0).collect();
        let mut kh = vec![0f64; tk * d];
        widen_head(&mut kh, &k, kw, off..off + d);
        let key = |j: usize| &k[j * kw + off..][..d];
        let qd: Vec<f64> = q.iter().map(|&x| x as f64).collect();
        let mut p = vec![0f64; tk];
        scores(&mut p, &qd, &kh, 0.25);
        for (j, &pj) in p.iter().enumerate() {
            let want = q.iter().zip(key(j)).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * 0.25;
            assert_eq!(pj.to_bits(), want.to_bits(), "score {j}");
        }
        let w: Vec<f64> = (0..tk).map(|_| rng.uniform() as f64 / 3.0).collect();
        let mut acc = vec![0f64; d];
        weighted_values(&mut acc, &w, &kh);
        for (c, &a) in acc.iter().enumerate() {
            let want: f64 = w.iter().enumerate().map(|(j, &wj)| wj * key(j)[c] as f64).sum();
            assert_eq!(a.to_bits(), want.to_bits(), "output {c}");
        }
    }

    #[test]
    fn cache_grows_by_position() {
        let mut c = KvCache::new(2, 3);
        assert!(c.is_empty());
        c.append(0, &[1.0; 6], &[2.0; 6]);
        c.append(1, &[1.0; 6], &[2.0; 6]);
        c.append(0, &[3.0; 3], &[4.0; 3]);
        assert_eq!(c.layer(0).0.len(), 9);
        assert_eq!(c.len(), 3);
    }
}
