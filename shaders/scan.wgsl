// scan: the element-wise linear recurrence h_t = a_t ⊙ h_{t-1} + b_t over T, with h_{-1} = 0
// (HGRN's token mixer).
//
// Bindings, in argument order:
//   @binding(0) a:      array<f32>           [T, D]
//   @binding(1) b:      array<f32>           [T, D]
//   @binding(2) h:      array<f32>           [T, D]
//   @binding(3) params: uniform ScanParams   { t = T, d = D }
//
// One invocation per channel d, sequential over T: the channels are independent, and each step
// depends on the previous one, so this is all the parallelism there is short of a parallel
// (associative) scan, which costs more arithmetic for no gain when D fills the device. Neighbour
// invocations read neighbour channels: every step's loads and stores are coalesced.
// Dispatch: ceil(D / WG) workgroups, folded into (x, y) when too many for x.

struct ScanParams {
    t: u32,
    d: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
@group(0) @binding(3) var<uniform> params: ScanParams;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let d = params.d;
    if (i >= d) {
        return;
    }
    // h_0 = b_0, as the CPU reference starts (a_0 * 0 would turn an infinite a_0 into NaN).
    var state = b[i];
    h[i] = state;
    for (var s = 1u; s < params.t; s++) {
        let k = s * d + i;
        state = a[k] * state + b[k];
        h[k] = state;
    }
}
