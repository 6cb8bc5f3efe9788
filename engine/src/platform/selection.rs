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
    FamilyRule {
        family: Family::Text,
        browsers: &[Browser::Firefox, Browser::Chrome],
        backend: Backend::Webgpu,
        precision: RulePrecision::Format("int4-g128-sym"),
        workgroup: None,
        why: "text: 4-bit on WebGPU in Firefox and Chrome",
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
        let (c, p) = select_model(&caps(Browser::Chrome, true, true), Family::Text);
        assert_eq!(
            (c.backend, p.to_string().as_str(), &c.fallbacks[..]),
            (Backend::Webgpu, "int4-g128-sym", &[Backend::Webnn, Backend::Wasm][..])
        );
    }

    #[test]
    fn the_seed_strategy() {
        let c = select(&caps(Browser::Chrome, true, true), Family::Text, LayerKind::Mlp);
        assert_eq!((c.backend, c.precision.as_str()), (Backend::Webgpu, "int4-g128-sym"));
        assert_eq!(c.fallbacks, [Backend::Webnn, Backend::Wasm]);
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
}
