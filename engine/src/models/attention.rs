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
    for head in 0..h.heads {
        let kvh = kv_head(head);
        for i in 0..tq {
            let qi = &q[i * qw + head * d..][..d];
            let mut max = f64::NEG_INFINITY;
            for (j, pj) in p.iter_mut().enumerate() {
                *pj = if allows(i, j) {
                    let kj = &k[j * kw + kvh * d..][..d];
                    qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                } else {
                    f64::NEG_INFINITY
                };
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
            let o = &mut out[i * qw + head * d..][..d];
            for (c, oc) in o.iter_mut().enumerate() {
                let acc: f64 = p.iter().enumerate().map(|(j, &pj)| pj * v[j * kw + kvh * d + c] as f64).sum();
                *oc = (acc / sum) as f32;
            }
        }
    }
    out
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
