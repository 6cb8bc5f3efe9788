// The thin JS shim between the harness (over WebDriver) and the engine (wasm).
// window.webq.environment(): what this browser offers (WebGPU adapter, features, limits; WebNN contexts).
// window.webq.runCell(spec): runs one cell in the engine; its output comes back as bytes (base64).
// window.webq.runPair({gpu, cpu, mode}): a WebGPU model cell here and a wasm one in a Web Worker,
// at once or one after the other (pair.js).
// window.webq.runOpCases(spec): the per-op cells on one backend, outputs only (webq ops judges them).
// A model cell's weights file is streamed from the page server into wasm memory first (chunk by
// chunk: the page never holds the file twice), and kept for the next cell of the same model.
import { engineModule } from './engine.js';
import { provokeErrors } from './provoke.js';
import { describe, runInEngine } from './weights.js';
import { runPair } from './pair.js';

// The engine bundle this browser can run (engine.js); a bundle that fails to load is the page's answer
// (`ready` below).
const loading = engineModule();
const { runCell, runOpCases, seedChecksum, modelBegin, modelChunk } = await loading.catch(() => ({}));

const LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension'];


async function webgpu() {
  if (!navigator.gpu) {
    return { available: false, reason: `navigator.gpu is ${navigator.gpu === null ? 'null' : 'undefined'}` };
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: 'navigator.gpu.requestAdapter() returned null' };
    const info = adapter.info || (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
    const limits = {};
    for (const k of LIMITS) limits[k] = adapter.limits[k];
    return {
      available: true,
      adapter: { vendor: info.vendor || '', architecture: info.architecture || '', device: info.device || '',
        description: info.description || '', isFallbackAdapter: adapter.isFallbackAdapter ?? info.isFallbackAdapter ?? null },
      features: [...adapter.features].sort(),
      shaderF16: adapter.features.has('shader-f16'),
      limits,
    };
  } catch (e) {
    return { available: false, reason: describe(e) };
  }
}

async function webnn() {
  if (!('ml' in navigator) || !navigator.ml) return { available: false, reason: 'navigator.ml is undefined' };
  const contexts = {};
  for (const deviceType of ['cpu', 'gpu', 'npu']) {
    try {
      const ctx = await navigator.ml.createContext({ deviceType });
      const lim = ctx.opSupportLimits ? ctx.opSupportLimits() : {};
      contexts[deviceType] = { ok: true, dequantizeLinear: lim.dequantizeLinear || null,
        quantizeLinear: lim.quantizeLinear || null, matmul: lim.matmul || null };
    } catch (e) {
      contexts[deviceType] = { ok: false, error: describe(e) };
    }
  }
  return { available: Object.values(contexts).some((c) => c.ok), contexts };
}

async function environment() {
  return { userAgent: navigator.userAgent, crossOriginIsolated: self.crossOriginIsolated === true, wasm: typeof WebAssembly === 'object', webgpu: await webgpu(), webnn: await webnn() };
}

// Progressive loading's events (one a stage, from the engine) go to the harness as they happen:
// it draws a progress bar while the cell loads. Fire and forget: the cell never waits on it.
window.webqProgress = (json) => {
  try {
    navigator.sendBeacon('/progress', json);
  } catch (e) {
    // A beacon refused costs the bar, not the cell.
  }
};

// The browser's own measure of the page's memory, where it has one (Chromium, cross-origin
// isolated); otherwise why not, in words.
async function browserMemory() {
  if (!self.crossOriginIsolated) return { browser_memory_note: 'the page is not cross-origin isolated' };
  if (!performance.measureUserAgentSpecificMemory) {
    return { browser_memory_note: 'performance.measureUserAgentSpecificMemory is not available' };
  }
  const late = new Promise((resolve) => setTimeout(resolve, 5000, null));
  try {
    const m = await Promise.race([performance.measureUserAgentSpecificMemory(), late]);
    if (!m) return { browser_memory_note: 'performance.measureUserAgentSpecificMemory() did not answer in 5 s' };
    return { browser_memory_bytes: m.bytes };
  } catch (e) {
    return { browser_memory_note: `performance.measureUserAgentSpecificMemory(): ${describe(e)}` };
  }
}

// The engine's linear memory (the page's high-water mark: it never shrinks).
let engineMemory = null;

// `measureMemory`: false in a pair, where Chromium's measure covers the worker too and answers only
// once the worker's task is done (or after 5 s), which would time the worker into the page's cell.
async function runOne(spec, { measureMemory = true } = {}) {
  const out = await runInEngine(spec, { runCell, modelBegin, modelChunk, memory: engineMemory });
  if (out.bench) {
    Object.assign(out.bench, measureMemory ? await browserMemory() : { browser_memory_note: 'not measured in a pair' });
  }
  return out;
}

window.webq = {
  environment,
  runCell: runOne,
  runPair: (pair) => runPair(pair, (spec) => runOne(spec, { measureMemory: false })),
  runOpCases: async (spec) => JSON.parse(await runOpCases(JSON.stringify(spec))),
  seedChecksum: (seed, n, k) => seedChecksum(BigInt(seed), n, k),
  provokeErrors,
};
loading.then((engine) => engine.default()).then((wasm) => { engineMemory = wasm.memory; window.webqReady = true; }, (e) => { window.webqReady = `engine failed to load: ${describe(e)}`; });
