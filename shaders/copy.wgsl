// copy: a strided copy of 32-bit words, the one data-movement kernel behind permute, narrow and
// concat, for every dtype (f32 moves as its bit pattern).
//
// Bindings, in argument order:
//   @binding(0) src:    array<u32>           the source tensor, any shape
//   @binding(1) dst:    array<u32>           the destination tensor, any shape
//   @binding(2) params: uniform CopyParams   { n, rank, src_offset, dst_offset,
//                                              shape, src_strides, dst_strides }
//
// Element i of the walk over `shape` (row-major, innermost dim last, numel n) has coordinates
// c[d]; it is copied from src[src_offset + sum c[d] * src_strides[d]] to
// dst[dst_offset + sum c[d] * dst_strides[d]]. The host expresses each op as such a walk:
//   permute (e.g. [T, H, K] -> [H, T, K]): shape = y's, src_strides = x's permuted;
//   narrow dim to start..start+len:  shape = [outer, len, inner], src_offset = start * inner;
//   concat: one dispatch per input, shape = [outer, len_j, inner] into the output at offset
//           off_j * inner with the output's strides.
// Size-1 dims are dropped and contiguous neighbours merged on the host, so rank <= 8 (two vec4
// per array).
// Dispatch: ceil(n / WG) workgroups, folded into (x, y) when too many for x.

struct CopyParams {
    n: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: CopyParams;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    var rem = i;
    var si = params.src_offset;
    var di = params.dst_offset;
    for (var d = params.rank; d > 0u; d--) {
        let q = d - 1u;
        let size = params.shape[q >> 2u][q & 3u];
        let c = rem % size;
        rem = rem / size;
        si += c * params.src_strides[q >> 2u][q & 3u];
        di += c * params.dst_strides[q >> 2u][q & 3u];
    }
    dst[di] = src[si];
}
