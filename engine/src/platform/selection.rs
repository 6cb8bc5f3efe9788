//! Backend and precision selection: the seed's strategy as tables. The browser's name orders the
//! backends; its real capabilities (what the page detected) strike out the ones it lacks; the model
//! family picks the precision. Every choice carries its reasons, and the remaining backends in order
//! are the fallbacks.

use serde::{Deserialize, Serialize};

use crate::protocol::Precision;
use crate::quant::{IntBits, IntFormat, LayerKind, MixedPolicy, QuantFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Browser {
    Chrome,
    Edge,
    Firefox,
    Safari,
    Other,
}

impl Browser {
    /// The browser family from a user agent string. Edge and Chrome both say `Chrome/`; WebKit
    /// browsers (WebKitGTK included) say `Safari/` without `Chrome/`.
    pub fn from_user_agent(ua: &str) -> Browser {
        if ua.contains("Edg/") {
            Browser::Edge
        } else if ua.contains("Firefox/") {
            Browser::Firefox
        } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
            Browser::Chrome
        } else if ua.contains("Safari/") || ua.contains("AppleWebKit/") {
            Browser::Safari
        } else {
            Browser::Other
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Webgpu,
    Webnn,
    Wasm,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Webgpu => "webgpu",
            Backend::Webnn => "webnn",
            Backend::Wasm => "wasm",
        }
    }
}

/// Backends in order of preference, per browser.
pub const BACKEND_ORDER: &[(Browser, &[Backend])] = &[
    (Browser::Firefox, &[Backend::Webgpu, Backend::Wasm]),
    (Browser::Edge, &[Backend::Webnn, Backend::Webgpu, Backend::Wasm]),
    (Browser::Chrome, &[Backend::Webgpu, Backend::Webnn, Backend::Wasm]),
    (Browser::Safari, &[Backend::Webnn, Backend::Webgpu, Backend::Wasm]),
    (Browser::Other, &[Backend::Webgpu, Backend::Wasm]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Text,
    Vision,
    Audio,
    Llm,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Text => "text",
            Family::Vision => "vision",
            Family::Audio => "audio",
            Family::Llm => "llm",
        }
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Family::Text),
            "vision" => Ok(Family::Vision),
            "audio" => Ok(Family::Audio),
            "llm" => Ok(Family::Llm),
            other => Err(format!("unknown model family `{other}` (known: text, vision, audio, llm)")),
        }
    }
}

/// The precision a family rule asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RulePrecision {
    /// One format for every layer (a name from the catalogue).
    Format(&'static str),
    /// The mixed-precision policy: the format depends on the layer kind.
    Mixed,
}

/// What a family prefers: a backend (if the browser offers it) and a precision.
struct FamilyRule {
    family: Family,
    /// Browsers the rule applies to (empty: all).
    browsers: &'static [Browser],
    backend: Backend,
    precision: RulePrecision,
    /// GEMV workgroup to use (None: the tuning table's).
    workgroup: Option<&'static str>,
    why: &'static str,
}

/// The per-family strategy, tried top to bottom; the first rule for the family and browser wins.
const FAMILY_RULES: &[FamilyRule] = &[
    // Not the seed's int4-g128-sym: with every tensor at 4 bits MiniLM misses its accuracy budget
    // (cosine to fp16 at least 0.95; 0.920 in `webq eval`, in every browser through `auto`), where
    // the mixed policy meets it (0.963) at 6.8 bits a weight (bench/2026-11-28-models-eval.txt).
    FamilyRule {
        family: Family::Text,
        browsers: &[Browser::Firefox, Browser::Chrome],
        backend: Backend::Webgpu,
        precision: RulePrecision::Mixed,
        workgroup: None,
        why: "text: mixed precision (4-bit default, 8-bit attention and embeddings, fp16 norms) on WebGPU in Firefox and Chrome",
    },
    FamilyRule {
        family: Family::Text,
        browsers: &[],
        backend: Backend::Webnn,
        precision: RulePrecision::Format("int8-pc-sym"),
        workgroup: None,
        why: "text: 8-bit on WebNN outside Firefox and Chrome",
    },
    FamilyRule {
        family: Family::Vision,
        browsers: &[],
        backend: Backend::Webgpu,
        precision: RulePrecision::Format("int8-pc-sym"),
        workgroup: None,
        why: "vision: 8-bit on WebGPU",
    },
    FamilyRule {
        family: Family::Audio,
        browsers: &[Browser::Firefox],
        backend: Backend::Webgpu,
        precision: RulePrecision::Format("int4-g128-sym"),
        workgroup: Some("256x1"),
        why: "audio: 4-bit with Firefox's workgroup tuning (256x1) in Firefox",
    },
    FamilyRule {
        family: Family::Audio,
        browsers: &[],
        backend: Backend::Webgpu,
        precision: RulePrecision::Format("int8-pc-sym"),
        workgroup: None,
        why: "audio: 8-bit on WebGPU outside Firefox",
    },
    FamilyRule {
        family: Family::Llm,
        browsers: &[],
        backend: Backend::Webgpu,
        precision: RulePrecision::Mixed,
        workgroup: None,
        why: "llm: mixed precision (4-bit default, 8-bit attention and embeddings, fp16 norms)",
    },
];

/// What the page found the browser can really do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub browser: Browser,
    pub webgpu: bool,
    /// WebGPU's adapter is a fallback adapter (`GPUAdapterInfo.isFallbackAdapter`: software on the
    /// CPU, SwiftShader in Chromium and lavapipe in Firefox here). Absent in older records.
    #[serde(default)]
    pub webgpu_fallback: bool,
    pub shader_f16: bool,
    pub webnn: bool,
    /// WebNN's `dequantizeLinear` takes int4 input (opSupportLimits).
    pub webnn_int4: bool,
    /// WebNN's context is on its CPU device (`deviceType: 'cpu'`, which `auto` asks for unless the
    /// cell names another). Absent in older records.
    #[serde(default)]
    pub webnn_cpu: bool,
    pub wasm_simd: bool,
}

impl Capabilities {
    pub fn has(&self, b: Backend) -> bool {
        match b {
            Backend::Webgpu => self.webgpu,
            Backend::Webnn => self.webnn,
            Backend::Wasm => true,
        }
    }
}

/// The choice: a backend, a precision for it, the fallbacks in order, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub browser: Browser,
    pub backend: Backend,
    /// What the family's rule asked for, and what the chosen backend runs.
    pub wanted: String,
    pub precision: String,
    /// The rule's WebGPU GEMV workgroup where WebGPU is in the plan, first or as a fallback (None:
    /// the tuning table's).
    pub workgroup: Option<String>,
    /// The backends to try next, in order, if this one fails.
    pub fallbacks: Vec<Backend>,
    pub reasons: Vec<String>,
}

/// The precision a backend runs for a requested one: WebNN (standard mode) runs 8-bit, so narrower
/// integer requests are upgraded to 8-bit with the same grouping and scheme; the others run it as asked.
pub fn precision_for(backend: Backend, format: QuantFormat) -> (QuantFormat, Option<String>) {
    match (backend, format.as_int()) {
        (Backend::Webnn, Some(f)) if f.bits != IntBits::B8 => {
            let up = QuantFormat::Int(IntFormat { bits: IntBits::B8, ..*f });
            (up, Some(format!("WebNN standard mode runs 8-bit: {format} upgraded to {up}")))
        }
        _ => (format, None),
    }
}

/// Selects a backend and precision for a whole model of `family`: the choice (for `llm`, as for its
/// MLP layers) and the model's precision, `mixed` where the family's rule says so.
pub fn select_model(caps: &Capabilities, family: Family) -> (Choice, Precision) {
    let choice = select(caps, family, LayerKind::Mlp);
    let precision = match rule_for(family, caps.browser).precision {
        RulePrecision::Mixed => Precision::Mixed,
        RulePrecision::Format(_) => Precision::Format(choice.wanted.parse().expect("select names known formats")),
    };
    (choice, precision)
}

fn rule_for(family: Family, browser: Browser) -> &'static FamilyRule {
    FAMILY_RULES
        .iter()
        .find(|r| r.family == family && (r.browsers.is_empty() || r.browsers.contains(&browser)))
        .expect("every family has a catch-all rule")
}

/// Why WebGPU on a fallback adapter goes after the browser's other backends: one model of each
/// family ran there 10-160x slower than on the wasm backend on the same CPU cores, in Chromium
/// (SwiftShader) and Firefox (lavapipe) alike (bench/2026-12-07-auto-fallback-adapter.txt).
const FALLBACK_ADAPTER_LAST: &str =
    "WebGPU's adapter is a fallback adapter (software, on the CPU): webgpu after the other backends";

/// Where WebNN on the CPU goes after the wasm backend. Chrome's WebNN CPU device (TFLite) folds
/// `dequantizeLinear` into a matmul only when the activations are quantized too, so it dequantizes
/// every weight on every inference: warm in chrome-shell, its 4096x4096 int8 GEMV took 61-67 ms
/// against the wasm backend's 3.1, and int8 SmolLM2 ran 9x, MiniLM 1.8x and Whisper 1.4x faster on
/// wasm (bench/2026-12-07-webnn-vs-wasm-chrome-shell.txt). ViT (GEMMs of hundreds of rows, XNNPACK's
/// strength) ran 1.8x faster on WebNN then; since the CPU path's own f32 attention and GELU
/// (`models::cpu_ops`) it is as fast or faster on wasm in every pairing measured: warm 0.84x
/// (169.5-172.5 ms against 200.9-222.4) and through `auto` 0.95x (158.4-164.1 against 162.4-178.3),
/// its first inference 0.59x (201-205 against 331-362, WebNN's graphs built in it;
/// bench/2026-12-07-cpu-ops-attention-gelu.txt). So every family goes to wasm first.
/// Measured in Chrome only.
const WASM_BEFORE_WEBNN_CPU: &[Browser] = &[Browser::Chrome];

/// Selects a backend and precision for a model family (and, for `llm`, the layer being run).
pub fn select(caps: &Capabilities, family: Family, layer: LayerKind) -> Choice {
    let order = BACKEND_ORDER.iter().find(|(b, _)| *b == caps.browser).map_or(&[][..], |(_, o)| o);
    let mut reasons = vec![format!(
        "{:?}: backends in order {}",
        caps.browser,
        order.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
    )];
    let rule = rule_for(family, caps.browser);
    reasons.push(rule.why.to_string());
    // The family's backend first when this browser offers it, then the browser's order.
    let mut candidates: Vec<Backend> = Vec::new();
    if order.contains(&rule.backend) {
        candidates.push(rule.backend);
    }
    candidates.extend(order.iter().copied().filter(|b| *b != rule.backend));
    if caps.webgpu && caps.webgpu_fallback {
        // Last, not struck out: it still runs what the CPU backends cannot (f16 arithmetic).
        candidates.retain(|b| *b != Backend::Webgpu);
        candidates.push(Backend::Webgpu);
        reasons.push(FALLBACK_ADAPTER_LAST.to_string());
    }
    if caps.webnn_cpu && WASM_BEFORE_WEBNN_CPU.contains(&caps.browser) {
        let at = |b| candidates.iter().position(|c| *c == b);
        if let (Some(webnn), Some(wasm)) = (at(Backend::Webnn), at(Backend::Wasm)) {
            if wasm > webnn {
                candidates.remove(wasm);
                candidates.insert(webnn, Backend::Wasm);
                reasons.push(format!(
                    "WebNN's CPU device dequantizes the weights every inference in {:?}: wasm before webnn for {}",
                    caps.browser,
                    family.name()
                ));
            }
        }
    }
    for b in candidates.iter().filter(|b| !caps.has(**b)) {
        reasons.push(format!("{} is not available in this browser", b.name()));
    }
    candidates.retain(|b| caps.has(*b));
    let backend = candidates.remove(0);
    let wanted = match rule.precision {
        RulePrecision::Mixed => {
            let format = MixedPolicy::webq_default().format_for(layer);
            reasons.push(format!("mixed policy: {layer:?} layers run {format}"));
            format
        }
        RulePrecision::Format(name) => name.parse().expect("the rules name known formats (tested)"),
    };
    let (precision, upgrade) = precision_for(backend, wanted);
    reasons.extend(upgrade);
    if backend != rule.backend {
        reasons.push(format!("{} instead of {}", backend.name(), rule.backend.name()));
    }
    // The rule's WebGPU workgroup wherever WebGPU may run, first or as a fallback.
    let on_webgpu = backend == Backend::Webgpu || candidates.contains(&Backend::Webgpu);
    let workgroup = on_webgpu.then_some(rule.workgroup).flatten().map(str::to_string);
    Choice {
        browser: caps.browser,
        backend,
        wanted: wanted.to_string(),
        precision: precision.to_string(),
        workgroup,
        fallbacks: candidates,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(browser: Browser, webgpu: bool, webnn: bool) -> Capabilities {
        Capabilities {
            browser,
            webgpu,
            webgpu_fallback: false,
            shader_f16: false,
            webnn,
            webnn_int4: webnn,
            webnn_cpu: false,
            wasm_simd: true,
        }
    }

    #[test]
    fn user_agents_name_their_family() {
        // The user agents of the browsers on this machine (webq doctor), and Edge's.
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
        let chromium = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";
        let webkit = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15";
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0";
        assert_eq!(Browser::from_user_agent(ff), Browser::Firefox);
        assert_eq!(Browser::from_user_agent(chromium), Browser::Chrome);
        assert_eq!(Browser::from_user_agent(webkit), Browser::Safari);
        assert_eq!(Browser::from_user_agent(edge), Browser::Edge);
    }

    #[test]
    fn a_whole_model_runs_its_family_rule() {
        let (c, p) = select_model(&caps(Browser::Firefox, true, false), Family::Llm);
        assert_eq!((c.backend, p), (Backend::Webgpu, Precision::Mixed));
        let (c, p) = select_model(&caps(Browser::Safari, false, false), Family::Text);
        assert_eq!((c.backend, p.to_string().as_str()), (Backend::Wasm, "int8-pc-sym"));
        // Text in Chrome and Firefox: the mixed policy, which meets MiniLM's budget (all 4-bit does not).
        let (c, p) = select_model(&caps(Browser::Chrome, true, true), Family::Text);
        assert_eq!(
            (c.backend, p, &c.fallbacks[..]),
            (Backend::Webgpu, Precision::Mixed, &[Backend::Webnn, Backend::Wasm][..])
        );
        let (c, p) = select_model(&caps(Browser::Firefox, true, false), Family::Text);
        assert_eq!((c.backend, p), (Backend::Webgpu, Precision::Mixed));
    }

    #[test]
    fn the_seed_strategy() {
        // Text's layers as the mixed policy gives them: 4-bit MLPs, 8-bit attention.
        let c = select(&caps(Browser::Chrome, true, true), Family::Text, LayerKind::Mlp);
        assert_eq!((c.backend, c.precision.as_str()), (Backend::Webgpu, "int4-g128-sym"));
        assert_eq!(c.fallbacks, [Backend::Webnn, Backend::Wasm]);
        let t = select(&caps(Browser::Firefox, true, false), Family::Text, LayerKind::Attention);
        assert_eq!(t.precision, "int8-pc-sym");
        let e = select(&caps(Browser::Edge, true, true), Family::Text, LayerKind::Mlp);
        assert_eq!((e.backend, e.precision.as_str()), (Backend::Webnn, "int8-pc-sym"));
        let a = select(&caps(Browser::Firefox, true, false), Family::Audio, LayerKind::Mlp);
        assert_eq!(
            (a.backend, a.precision.as_str(), a.workgroup.as_deref()),
            (Backend::Webgpu, "int4-g128-sym", Some("256x1"))
        );
        let v = select(&caps(Browser::Safari, true, true), Family::Vision, LayerKind::Mlp);
        assert_eq!((v.backend, v.precision.as_str()), (Backend::Webgpu, "int8-pc-sym"));
        let l = select(&caps(Browser::Chrome, true, true), Family::Llm, LayerKind::Attention);
        assert_eq!(l.precision, "int8-pc-sym");
    }

    #[test]
    fn capabilities_strike_out_backends_and_upgrade_precisions() {
        // Chromium without WebGPU and with WebNN: text falls to WebNN, upgraded to 8-bit, said so.
        let c = select(&caps(Browser::Chrome, false, true), Family::Text, LayerKind::Mlp);
        assert_eq!((c.backend, c.precision.as_str()), (Backend::Webnn, "int8-g128-sym"));
        assert!(c.reasons.iter().any(|r| r.contains("upgraded")), "{:?}", c.reasons);
        // WebKitGTK here: neither WebGPU nor WebNN: wasm.
        let s = select(&caps(Browser::Safari, false, false), Family::Audio, LayerKind::Mlp);
        assert_eq!((s.backend, s.precision.as_str()), (Backend::Wasm, "int8-pc-sym"));
        assert!(s.fallbacks.is_empty());
    }

    #[test]
    fn a_fallback_adapter_puts_webgpu_last() {
        let on_cpu = |browser, webnn| Capabilities { webgpu_fallback: true, ..caps(browser, true, webnn) };
        // Firefox on lavapipe: the wasm backend, WebGPU behind it at the rule's precision.
        let f = select(&on_cpu(Browser::Firefox, false), Family::Llm, LayerKind::Mlp);
        assert_eq!(
            (f.backend, f.precision.as_str(), &f.fallbacks[..]),
            (Backend::Wasm, "int4-g128-sym", &[Backend::Webgpu][..])
        );
        assert!(f.reasons.iter().any(|r| r == FALLBACK_ADAPTER_LAST), "{:?}", f.reasons);
        assert!(f.reasons.iter().any(|r| r == "wasm instead of webgpu"), "{:?}", f.reasons);
        // Firefox's audio rule names a WebGPU workgroup: kept for WebGPU as the fallback.
        let a = select(&on_cpu(Browser::Firefox, false), Family::Audio, LayerKind::Mlp);
        assert_eq!((a.backend, a.workgroup.as_deref()), (Backend::Wasm, Some("256x1")));
        // chrome-shell on SwiftShader with WebNN: the browser's order without WebGPU, then WebGPU.
        let c = select(&on_cpu(Browser::Chrome, true), Family::Text, LayerKind::Mlp);
        assert_eq!((c.backend, &c.fallbacks[..]), (Backend::Webnn, &[Backend::Wasm, Backend::Webgpu][..]));
        // Without WebGPU the flag changes nothing.
        let n = Capabilities { webgpu: false, ..on_cpu(Browser::Firefox, false) };
        assert_eq!(
            select(&n, Family::Llm, LayerKind::Mlp),
            select(&caps(Browser::Firefox, false, false), Family::Llm, LayerKind::Mlp)
        );
    }

    #[test]
    fn webnn_on_the_cpu_goes_after_wasm_in_chrome() {
        let cpu =
            |browser, webgpu_fallback| Capabilities { webgpu_fallback, webnn_cpu: true, ..caps(browser, true, true) };
        // chrome-shell here: SwiftShader (a fallback adapter) and WebNN on the CPU.
        for family in [Family::Text, Family::Vision, Family::Audio, Family::Llm] {
            let c = select(&cpu(Browser::Chrome, true), family, LayerKind::Mlp);
            assert_eq!(
                (c.backend, &c.fallbacks[..]),
                (Backend::Wasm, &[Backend::Webnn, Backend::Webgpu][..]),
                "{family:?}"
            );
            assert!(c.reasons.iter().any(|r| r.contains("wasm before webnn")), "{:?}", c.reasons);
        }
        let (v, p) = select_model(&cpu(Browser::Chrome, true), Family::Vision);
        assert_eq!((v.backend, p), (Backend::Wasm, Precision::Format("int8-pc-sym".parse().unwrap())));
        // A real GPU stays first; WebNN on the CPU still goes after wasm.
        let g = select(&cpu(Browser::Chrome, false), Family::Llm, LayerKind::Mlp);
        assert_eq!((g.backend, &g.fallbacks[..]), (Backend::Webgpu, &[Backend::Wasm, Backend::Webnn][..]));
        // WebNN on another device, or another browser (not measured): the browser's order.
        let npu = Capabilities { webnn_cpu: false, ..cpu(Browser::Chrome, true) };
        assert_eq!(select(&npu, Family::Text, LayerKind::Mlp).backend, Backend::Webnn);
        let e = select(&cpu(Browser::Edge, true), Family::Text, LayerKind::Mlp);
        assert_eq!((e.backend, &e.fallbacks[..]), (Backend::Webnn, &[Backend::Wasm, Backend::Webgpu][..]));
        // A whole MiniLM in chrome-shell: the mixed policy on the wasm backend.
        let (m, p) = select_model(&cpu(Browser::Chrome, true), Family::Text);
        assert_eq!((m.backend, p), (Backend::Wasm, Precision::Mixed));
    }
}
