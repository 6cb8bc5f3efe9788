// Which of the two engine bundles this page (or worker) loads. Both are the same Rust code for
// wasm32 with simd128; webq_engine_relaxed adds relaxed-simd, whose f32x4.relaxed_madd adds the CPU
// path's products with one rounding where the engine fuses (each cell records its dot path, and
// native holds a twin for each). An engine that cannot validate relaxed-simd would refuse that
// whole module (WebKitGTK 2.50 does), so it gets the simd128 bundle.

// The smallest module that uses the instruction: one function () -> v128 whose body is three
// v128.const and f32x4.relaxed_madd (0xfd, 0x105 as LEB128).
function relaxedMaddModule() {
  const v128Const = [0xfd, 0x0c, ...new Array(16).fill(0)];
  const body = [0x00, ...v128Const, ...v128Const, ...v128Const, 0xfd, 0x85, 0x02, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // functions: one, of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // code
  ]);
}

export const relaxedSimd = WebAssembly.validate(relaxedMaddModule());

// The engine's module (its default export initialises it).
export const engineModule = () => import(relaxedSimd ? './webq_engine_relaxed.js' : './webq_engine.js');
