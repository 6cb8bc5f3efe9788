//! The audio cells' inputs: speech synthesized by `espeak-ng` from the sentences kept in
//! `data/speech.txt`, resampled to 16 kHz mono and turned into Whisper's log-mel features, all
//! natively.
//!
//! Whisper's features: a 400-point STFT (periodic Hann window, hop 160, centred with reflection
//! at the ends of the 30 s window) of the audio padded with 30 s of zeros, the power spectrum
//! through 80 Slaney mel filters, `log10` clamped at 1e-10, floored 8 below the maximum, then
//! `(x + 4) / 4`; the last frame dropped. A cell keeps the frames its audio needs.

use std::f64::consts::PI;
use std::path::Path;
use std::process::Command;

use thiserror::Error;

pub const RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const MELS: usize = 80;

#[derive(Debug, Error)]
pub enum SpeechError {
    #[error("espeak-ng: {0} (scripts/setup installs it: apt-get install espeak-ng)")]
    Espeak(String),
    #[error("{path}: {why}")]
    Wav { path: String, why: String },
}

/// Speaks `text` with espeak-ng's default voice, at 16 kHz.
pub fn speak(text: &str) -> Result<Vec<f32>, SpeechError> {
    let dir = std::env::temp_dir().join(format!("webq-speech-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| SpeechError::Espeak(e.to_string()))?;
    let wav = dir.join(format!("{:016x}.wav", fxhash(text)));
    let out = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .output()
        .map_err(|e| SpeechError::Espeak(format!("cannot run it: {e}")))?;
    if !out.status.success() {
        return Err(SpeechError::Espeak(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let (rate, samples) = read_wav(&wav)?;
    let _ = std::fs::remove_file(&wav);
    Ok(resample(&samples, rate, RATE))
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// A 16-bit PCM WAV file's sample rate and its first channel, in [-1, 1).
pub fn read_wav(path: &Path) -> Result<(u32, Vec<f32>), SpeechError> {
    let bad = |why: String| SpeechError::Wav { path: path.display().to_string(), why };
    let b = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(bad("not a RIFF WAVE file".into()));
    }
    let (mut at, mut format) = (12, None);
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body = &b[at + 8..(at + 8 + len).min(b.len())];
        if id == b"fmt " && body.len() >= 16 {
            let u16_at = |o: usize| u16::from_le_bytes([body[o], body[o + 1]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
            format = Some((u16_at(0), u16_at(2) as usize, rate, u16_at(14)));
        }
        if id == b"data" {
            let Some((1, channels, rate, 16)) = format else {
                return Err(bad(format!("format {format:?}: webq reads 16-bit PCM (format 1)")));
            };
            let frame = 2 * channels.max(1);
            // espeak-ng writes a streaming header whose data length may be 0x7fffffff: take what is there.
            let samples = body.chunks_exact(frame).map(|s| i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0).collect();
            return Ok((rate, samples));
        }
        at += 8 + len + (len & 1);
    }
    Err(bad("no data chunk".into()))
}

/// Resamples by a windowed sinc (Hann window, 32 zero crossings a side, cut off at 95% of the
/// lower Nyquist frequency).
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let ratio = to as f64 / from as f64;
    let cutoff = 0.95 * 0.5 * ratio.min(1.0); // in cycles per input sample
    let half = (32.0 / (2.0 * cutoff)).ceil() as i64; // input samples a side
    let n = (x.len() as f64 * ratio).floor() as usize;
    (0..n)
        .map(|o| {
            let pos = o as f64 / ratio;
            let centre = pos.floor() as i64;
            let mut acc = 0.0;
            for i in centre - half..=centre + half + 1 {
                if i < 0 || i as usize >= x.len() {
                    continue;
                }
                let d = pos - i as f64;
                if d.abs() > half as f64 {
                    continue;
                }
                let sinc = if d == 0.0 { 1.0 } else { (2.0 * PI * cutoff * d).sin() / (PI * d) / (2.0 * cutoff) };
                let window = 0.5 + 0.5 * (PI * d / half as f64).cos();
                acc += x[i as usize] as f64 * 2.0 * cutoff * sinc * window;
            }
            acc as f32
        })
        .collect()
}

fn hz_to_mel(f: f64) -> f64 {
    let (sp, min_log_hz, min_log_mel, step) = (200.0 / 3.0, 1000.0, 15.0, (6.4f64).ln() / 27.0);
    if f < min_log_hz {
        f / sp
    } else {
        min_log_mel + (f / min_log_hz).ln() / step
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (sp, min_log_hz, min_log_mel, step) = (200.0 / 3.0, 1000.0, 15.0, (6.4f64).ln() / 27.0);
    if m < min_log_mel {
        m * sp
    } else {
        min_log_hz * (step * (m - min_log_mel)).exp()
    }
}

/// The Slaney-scale, Slaney-normalized mel filter bank (librosa's default; Whisper's
/// `mel_filters.npz`): `MELS x (N_FFT / 2 + 1)`.
pub fn mel_filters() -> Vec<f64> {
    let bins = N_FFT / 2 + 1;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(RATE as f64 / 2.0));
    let f: Vec<f64> = (0..MELS + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (MELS + 1) as f64)).collect();
    let mut w = vec![0.0; MELS * bins];
    for m in 0..MELS {
        let norm = 2.0 / (f[m + 2] - f[m]);
        for k in 0..bins {
            let hz = k as f64 * RATE as f64 / N_FFT as f64;
            let lower = (hz - f[m]) / (f[m + 1] - f[m]);
            let upper = (f[m + 2] - hz) / (f[m + 2] - f[m + 1]);
            w[m * bins + k] = lower.min(upper).max(0.0) * norm;
        }
    }
    w
}

/// The frames a cell keeps for `samples` of audio: enough to cover it, even, at most 3000.
pub fn frames_for(samples: usize) -> usize {
    (samples.div_ceil(HOP).div_ceil(2) * 2).clamp(2, 3000)
}

/// Whisper's log-mel features of `audio` (16 kHz), the first `frames` frames: `MELS x frames`.
pub fn log_mel(audio: &[f32], frames: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    // The frames that see any audio; the rest of the 30 s window is silence (-10 before scaling).
    let live = (audio.len() + N_FFT / 2).div_ceil(HOP) + 1;
    let computed = frames.max(live.min(3000));
    let sample = |i: i64| -> f64 {
        // Centred: the signal is audio then zeros to 30 s; reflection only at its very ends.
        let i = if i < 0 { -i } else { i };
        audio.get(i as usize).map_or(0.0, |&v| v as f64)
    };
    let window: Vec<f64> = (0..N_FFT).map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / N_FFT as f64).cos()).collect();
    let (cos, sin): (Vec<f64>, Vec<f64>) =
        (0..N_FFT).map(|n| 2.0 * PI * n as f64 / N_FFT as f64).map(|a| (a.cos(), a.sin())).unzip();
    let filters = mel_filters();
    let mut logs = vec![0f64; MELS * computed];
    let mut frame = vec![0f64; N_FFT];
    let mut power = vec![0f64; bins];
    for t in 0..computed {
        for (n, v) in frame.iter_mut().enumerate() {
            *v = sample((t * HOP + n) as i64 - (N_FFT / 2) as i64) * window[n];
        }
        for (k, p) in power.iter_mut().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &v) in frame.iter().enumerate() {
                let j = (k * n) % N_FFT;
                re += v * cos[j];
                im -= v * sin[j];
            }
            *p = re * re + im * im;
        }
        for m in 0..MELS {
            let e: f64 = filters[m * bins..(m + 1) * bins].iter().zip(&power).map(|(w, p)| w * p).sum();
            logs[m * computed + t] = e.max(1e-10).log10();
        }
    }
    let max = logs.iter().copied().fold(-10.0, f64::max);
    let mut out = Vec::with_capacity(MELS * frames);
    for m in 0..MELS {
        out.extend(logs[m * computed..m * computed + frames].iter().map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of Whisper's own `assets/mel_filters.npz` (`mel_80`, openai-whisper 20250625).
    #[test]
    fn mel_filters_are_whispers() {
        let w = mel_filters();
        let at = |m: usize, k: usize| w[m * 201 + k];
        for (got, want) in [(at(0, 1), 0.02486259490251541), (at(10, 10), 0.01990822), (at(10, 11), 0.00495437)] {
            assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        }
        let nonzero = |m: usize| (0..201).filter(|&k| at(m, k) > 0.0).collect::<Vec<_>>();
        assert_eq!(nonzero(0), [1]);
        assert_eq!(nonzero(40), [42, 43, 44]);
        assert_eq!((nonzero(79)[0], *nonzero(79).last().unwrap()), (186, 199));
        let max79 = (0..201).map(|k| at(79, k)).fold(0.0, f64::max);
        assert!((max79 - 0.0031647118739783764).abs() < 1e-8, "{max79}");
    }

    #[test]
    fn silence_and_a_tone_give_whispers_frames() {
        // Silence: every value is log10(1e-10) = -10, scaled: -1.5.
        assert!(log_mel(&[0.0; 3200], 20).iter().all(|&v| v == -1.5));
        // A 1 kHz tone: frame values from numpy running Whisper's recipe (reflect-padded
        // centred STFT, periodic Hann, mel_filters.npz) on the same 0.2 s of samples.
        let tone: Vec<f32> = (0..3200).map(|n| (0.5 * (2.0 * PI * 1000.0 * n as f64 / 16000.0).sin()) as f32).collect();
        let x = log_mel(&tone, 20);
        let at = |m: usize, t: usize| x[m * 20 + t];
        let peak = (0..80).max_by(|&a, &b| at(a, 10).total_cmp(&at(b, 10))).unwrap();
        assert_eq!(peak, REFERENCE_PEAK.0);
        assert!((at(peak, 10) as f64 - REFERENCE_PEAK.1).abs() < 1e-4);
        for &(m, t, want) in REFERENCE {
            assert!((at(m, t) as f64 - want).abs() < 1e-4, "mel {m} frame {t}: {} vs {want}", at(m, t));
        }
    }

    const REFERENCE_PEAK: (usize, f64) = (26, 1.4396516606287362);
    const REFERENCE: &[(usize, usize, f64)] = &[
        (26, 10, 1.439652),
        (26, 0, 1.127864),
        (26, 19, 1.438391),
        (24, 10, 1.142181),
        (25, 10, 1.341125),
        (27, 10, 1.283269),
        (0, 10, -0.560348),
        (28, 10, -0.560348),
        (79, 19, -0.560348),
    ];

    #[test]
    fn resampling_keeps_a_tone_and_its_level() {
        let from: Vec<f32> = (0..22050).map(|n| (2.0 * PI * 440.0 * n as f64 / 22050.0).sin() as f32).collect();
        let y = resample(&from, 22050, 16000);
        assert_eq!(y.len(), 16000);
        let worst = (1000..15000)
            .map(|n| (y[n] as f64 - (2.0 * PI * 440.0 * n as f64 / 16000.0).sin()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 2e-3, "{worst}");
    }
}
