// cumsum: inclusive prefix sum over the last dimension, y[r, j] = sum_{i <= j} x[r, i].
//
// Bindings, in argument order (the input's leading dims flattened into R rows of length D):
//   @binding(0) x:      array<f32>             [R, D]
//   @binding(1) y:      array<f32>             [R, D]
//   @binding(2) params: uniform CumsumParams   { rows = R, d = D }
//
// One workgroup per row (rows folded into a 2D dispatch (x, y) when R exceeds the per-dimension
// limit). The row is walked in chunks of CHUNK = WG * PER elements, so any D works:
//   1. the chunk is loaded coalesced into workgroup memory (0 past the row's end);
//   2. each thread scans its PER consecutive elements serially (fewer, longer serial runs than one
//      element per thread: fewer barriers per element);
//   3. a Hillis-Steele scan over the WG thread totals gives each thread the sum before its run;
//   4. results are written back coalesced, plus `carry`, the total of all earlier chunks.

struct CumsumParams {
    rows: u32,
    d: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: CumsumParams;

// Threads per workgroup (a power of two for the scan); the host uses the same value.
const WG: u32 = 256u;
const PER: u32 = 4u;
const CHUNK: u32 = 1024u; // WG * PER

var<workgroup> chunk: array<f32, CHUNK>;
var<workgroup> totals: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Depends only on uniform values: the early return keeps barriers in uniform control flow.
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let d = params.d;
    let base = row * d;

    var carry = 0.0;
    for (var c0 = 0u; c0 < d; c0 += CHUNK) {
        for (var p = 0u; p < PER; p++) {
            let j = p * WG + lid;
            var v = 0.0;
            if (c0 + j < d) {
                v = x[base + c0 + j];
            }
            chunk[j] = v;
        }
        workgroupBarrier();

        var run = 0.0;
        for (var p = 0u; p < PER; p++) {
            run += chunk[lid * PER + p];
            chunk[lid * PER + p] = run;
        }
        totals[lid] = run;
        workgroupBarrier();

        for (var off = 1u; off < WG; off <<= 1u) {
            var v = 0.0;
            if (lid >= off) {
                v = totals[lid - off];
            }
            // Everyone reads before anyone writes this round.
            workgroupBarrier();
            totals[lid] += v;
            workgroupBarrier();
        }

        var before = carry;
        if (lid > 0u) {
            before = carry + totals[lid - 1u];
        }
        for (var p = 0u; p < PER; p++) {
            chunk[lid * PER + p] = before + chunk[lid * PER + p];
        }
        workgroupBarrier();
        for (var p = 0u; p < PER; p++) {
            let j = p * WG + lid;
            if (c0 + j < d) {
                y[base + c0 + j] = chunk[j];
            }
        }
        carry += totals[WG - 1u];
        // The next chunk overwrites `chunk` and `totals`: wait until everyone is done with them.
        workgroupBarrier();
    }
}
