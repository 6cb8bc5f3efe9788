// The scale of group gi, joined into every matmul kernel (each declares `scales` and SCALE_F16): f16
// scales are stored two per word, low half first; f32 scales one per word.
fn scale_at(gi: u32) -> f32 {
    if SCALE_F16 {
        let pair = unpack2x16float(scales[gi / 2u]);
        return select(pair.x, pair.y, gi % 2u == 1u);
    }
    return bitcast<f32>(scales[gi]);
}
