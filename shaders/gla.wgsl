// gla: gated linear attention, chunkwise (specs/models.md §3.4), fused: for each of N heads
//   S_t = diag(exp lg_t) S_{t−1} + k_tᵀ v_t,   o_t = q_t S_t      (q already scaled, lg ≤ 0)
// computed chunk by chunk as the CPU composition does (`backend::composite::gla_chunked`):
// inside a chunk of L tokens, with B_t = Σ_{j ≤ t} lg_j (cumulative inside the chunk),
//   o_t = (q_t ⊙ exp B_t) S_in + Σ_{j ≤ t} A[t, j] v_j,  A[t, j] = Σ_d q_t[d] k_j[d] exp(B_t[d] − B_j[d])
//   S_out = diag(exp B_last) S_in + Σ_j (k_j ⊙ exp(B_last − B_j))ᵀ v_j
// Every exponent is ≤ 0, so nothing overflows.
//
// Bindings, in argument order:
//   @binding(0) q:      array<f32>           [N, T, dk]
//   @binding(1) k:      array<f32>           [N, T, dk]
//   @binding(2) v:      array<f32>           [N, T, dv]
//   @binding(3) lg:     array<f32>           [N, T, dk]
//   @binding(4) o:      array<f32>           [N, T, dv]
//   @binding(5) params: uniform GlaParams    { n, t, dk, dv, chunk = L, bv, tiles_v }
//
// One workgroup of 256 threads per (head, tile of BV value columns), linearised as
// head * tiles_v + tile and folded into (x, y). The workgroup keeps its [dk, BV] slice of the
// state in workgroup memory for the whole sequence and walks the chunks in order; per chunk:
// (1) the cumulative decays B [L, dk], (2) the intra-chunk matrix A [L, L], (3) the chunk's
// outputs for its columns, (4) the state update. The host picks L <= 16 with L·dk <= 2048 and
// BV with dk·BV <= 1024 (so dk <= 1024; larger heads take the composed path).

struct GlaParams {
    n: u32,
    t: u32,
    dk: u32,
    dv: u32,
    chunk: u32,
    bv: u32,
    tiles_v: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> lg: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<uniform> params: GlaParams;

const WG: u32 = 256u;

var<workgroup> bc: array<f32, 2048>; // [L, dk]
var<workgroup> a: array<f32, 256>;   // [L, L]
var<workgroup> st: array<f32, 1024>; // [dk, BV]

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = params.t;
    let dk = params.dk;
    let dv = params.dv;
    let bv = params.bv;
    // Depends only on uniform values: the early return keeps barriers in uniform control flow.
    let group = wid.x + wid.y * nwg.x;
    if (group >= params.n * params.tiles_v) {
        return;
    }
    let head = group / params.tiles_v;
    let c0 = (group % params.tiles_v) * bv;
    let qk0 = head * t * dk; // head's first row of q, k, lg
    let v0 = head * t * dv;  // head's first row of v, o

    for (var e = lid; e < dk * bv; e += WG) {
        st[e] = 0.0;
    }
    for (var s0 = 0u; s0 < t; s0 += params.chunk) {
        let l = min(params.chunk, t - s0);
        // (1) B[tt, d] = Σ_{j <= tt} lg[s0 + j, d].
        for (var d = lid; d < dk; d += WG) {
            var acc = 0.0;
            for (var tt = 0u; tt < l; tt++) {
                acc += lg[qk0 + (s0 + tt) * dk + d];
                bc[tt * dk + d] = acc;
            }
        }
        workgroupBarrier();
        // (2) A[tt, j] for j <= tt (0 above the diagonal).
        for (var e = lid; e < l * l; e += WG) {
            let tt = e / l;
            let j = e % l;
            var acc = 0.0;
            if (j <= tt) {
                let qr = qk0 + (s0 + tt) * dk;
                let kr = qk0 + (s0 + j) * dk;
                for (var d = 0u; d < dk; d++) {
                    acc += q[qr + d] * k[kr + d] * exp(bc[tt * dk + d] - bc[j * dk + d]);
                }
            }
            a[e] = acc;
        }
        workgroupBarrier();
        // (3) Outputs of this tile's columns: inter-chunk (through S_in) plus intra-chunk.
        for (var e = lid; e < l * bv; e += WG) {
            let tt = e / bv;
            let c = e % bv;
            let col = c0 + c;
            if (col < dv) {
                var inter = 0.0;
                let qr = qk0 + (s0 + tt) * dk;
                for (var d = 0u; d < dk; d++) {
                    inter += q[qr + d] * exp(bc[tt * dk + d]) * st[d * bv + c];
                }
                var intra = 0.0;
                for (var j = 0u; j <= tt; j++) {
                    intra += a[tt * l + j] * v[v0 + (s0 + j) * dv + col];
                }
                o[v0 + (s0 + tt) * dv + col] = inter + intra;
            }
        }
        workgroupBarrier();
        // (4) S_out for this tile's columns.
        for (var e = lid; e < dk * bv; e += WG) {
            let d = e / bv;
            let c = e % bv;
            let col = c0 + c;
            if (col < dv) {
                let blast = bc[(l - 1u) * dk + d];
                var acc = exp(blast) * st[e];
                for (var j = 0u; j < l; j++) {
                    acc += k[qk0 + (s0 + j) * dk + d] * exp(blast - bc[j * dk + d]) * v[v0 + (s0 + j) * dv + col];
                }
                st[e] = acc;
            }
        }
        // bc and a are rewritten by the next chunk.
        workgroupBarrier();
    }
}
