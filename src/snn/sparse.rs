//! `I += x·Wᵀ` from the nonzero entries of `x` alone, with the bits of [`matmul`]; and with the same
//! kernel, sums of outer products `aᵀ·b` from the nonzero entries of `a` or `b`.
//!
//! A hidden layer's input is spikes (0 or 1) or pooled pixels (about three quarters of MNIST's are 0),
//! so most of a dense product's multiply-adds multiply zeros. Skipping them leaves the result's bits
//! as they were, because of how `gemm` sums (gemm-common 0.19, `gemm.rs` and `microkernel.rs`): an
//! element of a product with 3 ≤ k ≤ 512 is one fused multiply-add chain over k in increasing order,
//! started from +0, added to `dst` once (`mul_add(1, acc, dst)`), on every x86-64 CPU with FMA. For a
//! finite `w`, `fma(0, w, acc) = acc + (±0) = acc`, since such a chain never holds −0; so the chain
//! over the nonzero entries is the chain over all of them. gemm's other paths order their sums
//! differently (k ≤ 2, one row or one column, m·n ≤ 256, k > 512): there, and on other CPUs, and
//! whenever a weight is not finite (`0·∞` must stay NaN), [`matmul_skipping_zeros`] calls gemm.

use super::grow;
use super::matmul::{Storage, matmul, matmul_scaled, store_transposed};

/// Scratch of [`matmul_skipping_zeros`], kept between calls so a warm forward pass allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct SparseScratch {
    /// `W` in output blocks of `block` outputs (the kernel's: [`BLOCK`] or [`WIDE_BLOCK`]): block `j`
    /// holds outputs `block·j ..`, input by input (`k` rows of the block's width, padded to a
    /// multiple of 8 with zeros), so the weights a block reads are contiguous and stay in L1.
    packed: Vec<f32>,
    /// Where the packed weights start in `packed`: the first 64-byte boundary, so no load of 8 lanes
    /// straddles two cache lines.
    packed_start: usize,
    /// The version, shape (n, k) and block width of the weights `packed` holds, if any.
    packed_for: Option<(u64, usize, usize, usize)>,
    /// The nonzero entries of the current product's `x`.
    entries: Entries,
    /// The entries of named inputs (see [`matmul_skipping_zeros`]), kept for their next product.
    kept: KeptEntries,
    /// Scratch of [`outer_products_skipping_zeros`]: the sparse operand transposed, then the
    /// transposed product.
    transposed: Vec<f32>,
}

/// The nonzero entries of an `m × k` input, as the kernels read them.
#[derive(Clone, Debug, Default)]
struct Entries {
    /// The input's shape (m, k) and its number of nonzero entries.
    shape: (usize, usize),
    nonzero: usize,
    /// Whether `offsets`, `indices` and `values` hold the entries (the AVX2 kernel's form): kept
    /// entries drop them once grouped, which is all the AVX-512 kernel reads.
    listed: bool,
    /// Row `r`'s nonzero entries are `indices[offsets[r]..offsets[r + 1]]` (increasing) and the
    /// matching `values`.
    offsets: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    /// Whether the groups below hold the entries (the AVX-512 kernel's form).
    grouped: bool,
    /// The AVX-512 kernel's entries: rows in groups of [`avx512::ROWS`], in increasing order of their
    /// entry counts (`group_rows`), each group's entries interleaved row by row and padded to the
    /// group's longest row with zero entries (`group_starts[g]..group_starts[g + 1]`).
    interleaved: Vec<Entry>,
    group_rows: Vec<u32>,
    group_starts: Vec<usize>,
}

impl Entries {
    /// `other`'s grouped entries (the AVX-512 kernel's form), reusing this one's buffers; the listed
    /// form is dropped.
    fn copy_groups_from(&mut self, other: &Entries) {
        debug_assert!(other.grouped);
        self.shape = other.shape;
        self.nonzero = other.nonzero;
        self.listed = false;
        self.grouped = true;
        self.interleaved.clone_from(&other.interleaved);
        self.group_rows.clone_from(&other.group_rows);
        self.group_starts.clone_from(&other.group_starts);
    }

    /// Heap bytes held.
    fn bytes(&self) -> usize {
        use std::mem::size_of;
        self.offsets.capacity() * size_of::<usize>()
            + self.indices.capacity() * size_of::<u32>()
            + self.values.capacity() * size_of::<f32>()
            + self.interleaved.capacity() * size_of::<Entry>()
            + self.group_rows.capacity() * size_of::<u32>()
            + self.group_starts.capacity() * size_of::<usize>()
    }
}

/// Entries of named inputs, the most recently used first to stay: a test set's chunks are tested
/// after each of about twenty consecutive tasks (`src/run.rs`, `TestSets`), and finding their
/// nonzero entries again each time cost 6% of a 200-task run. A stochastic learner's predictions
/// run each chunk several times (one per weight sample), and keep them for those too.
#[derive(Clone, Debug)]
struct KeptEntries {
    /// Name → entries and when they were last used (`clock`).
    map: std::collections::HashMap<InputName, (Entries, u64)>,
    bytes: usize,
    clock: u64,
    /// At most this many bytes ([`KeptEntries::BUDGET_BYTES`] but in tests).
    budget: usize,
}

impl Default for KeptEntries {
    fn default() -> Self {
        KeptEntries {
            map: Default::default(),
            bytes: 0,
            clock: 0,
            budget: Self::BUDGET_BYTES,
        }
    }
}

/// The name a caller gives an input: the same name, the same `x` (see [`matmul_skipping_zeros`]).
pub type InputName = usize;

impl KeptEntries {
    /// At most this many bytes of entries per scratch: 21 test sets of 2,000 pooled MNIST images
    /// (about 70 nonzero pixels each, 8 bytes per grouped entry) are about 25 MB.
    const BUDGET_BYTES: usize = 64 << 20;

    fn take(&mut self, name: InputName) -> Option<Entries> {
        let (entries, _) = self.map.remove(&name)?;
        self.bytes -= entries.bytes();
        Some(entries)
    }

    /// Keeps `entries` under `name`, dropping the least recently used beyond the budget (`entries`
    /// themselves when they alone exceed it).
    fn keep(&mut self, name: InputName, mut entries: Entries) {
        if entries.grouped && entries.listed {
            entries.listed = false;
            entries.indices = Vec::new();
            entries.values = Vec::new();
        }
        let bytes = entries.bytes();
        if bytes > self.budget {
            return;
        }
        self.clock += 1;
        self.bytes += bytes;
        if let Some((old, _)) = self.map.insert(name, (entries, self.clock)) {
            self.bytes -= old.bytes();
        }
        while self.bytes > self.budget {
            let oldest = *self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(name, _)| name)
                .expect("bytes are held by entries");
            let (dropped, _) = self.map.remove(&oldest).expect("found above");
            self.bytes -= dropped.bytes();
        }
    }
}

/// One nonzero entry of a row of `x`: its column and value.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Entry {
    index: u32,
    value: f32,
}

/// How a kernel writes each sum: added to `dst` (gemm's `accumulate`, `dst + sum`), or scaled without
/// reading `dst` (gemm's `scale · sum`).
#[derive(Clone, Copy, Debug)]
enum Store {
    Add,
    Scaled(f32),
}

/// Outputs per block of the packed weights for the AVX2 kernel: 4 registers of 8 lanes.
const BLOCK: usize = 32;

/// Outputs per block for the AVX-512 kernel: 4 registers of 16 lanes (196 inputs × 64 outputs is
/// 50 KB; the rows a block's products read, the inputs some example has nonzero, mostly fit in L1).
const WIDE_BLOCK: usize = 64;

/// Whether gemm sums each element of a product of this shape, on this CPU, as one chain stored once (see
/// the module doc): then the sparse kernel gives [`matmul`]'s bits, and so does gemm scaling as it stores.
pub fn sparse_rows_supported((m, k, n): (usize, usize, usize)) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        m >= 2
            && n >= 2
            && (3..=512).contains(&k)
            && m * n > 256
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n);
        false
    }
}

/// `dst (m×n) += x (m×k) · Wᵀ`, with `W` `n×k` row-major: [`matmul`]'s result with `accumulate`, bit
/// for bit, computed from `x`'s nonzero entries alone where that is faster.
///
/// `w` comes with a version ([`super::Network`]'s): calls that pass the same version must pass the
/// same weights, so packing them is done once for all the products that use them (a test phase
/// runs thousands). `x` may come with a name on the same contract: calls that name it alike must
/// pass the same `x`, and its nonzero entries are then found once and kept in the scratch (within
/// [`KeptEntries::BUDGET_BYTES`]) for the products that use it.
pub fn matmul_skipping_zeros(
    dst: &mut [f32],
    x: (&[f32], Option<InputName>),
    w: (&[f32], u64),
    shape: (usize, usize, usize),
    scratch: &mut SparseScratch,
) {
    skipping_zeros(dst, x, w, shape, scratch, (false, false));
}

/// [`matmul_skipping_zeros`]; `always_sparse` takes the sparse kernel wherever it is supported, even
/// where gemm would be faster, and `narrow` the AVX2 kernel even where AVX-512 is there (for tests).
fn skipping_zeros(
    dst: &mut [f32],
    (x, name): (&[f32], Option<InputName>),
    (w, version): (&[f32], u64),
    (m, k, n): (usize, usize, usize),
    scratch: &mut SparseScratch,
    (always_sparse, narrow): (bool, bool),
) {
    let dense = |dst: &mut [f32]| matmul(dst, x, Storage::RowMajor, w, Storage::Transposed, (m, k, n), true);
    if !sparse_rows_supported((m, k, n)) {
        return dense(dst);
    }
    assert!(dst.len() >= m * n && x.len() >= m * k && w.len() >= n * k);
    #[cfg(target_arch = "x86_64")]
    {
        // Costs measured with `cargo bench --bench train -- first_layer` (196 → 256), in units of
        // gemm's time per multiply-add: the sparse kernel takes about 2 per nonzero entry and
        // output (fitted on an AVX2 core). Packing W is charged 50 per weight, more than it costs
        // alone: by 8 × 8 tiles it is about 13 (on an AVX-512 EPYC, `skipping_zeros_repacked/500`
        // 13 µs above `skipping_zeros/500`; gemm takes 32 µs for `gemm/32`'s 1.6 M
        // multiply-adds), and a training batch of 32 repacked is faster alone
        // (`skipping_zeros_repacked/32` 26.6–27.1 µs against `gemm/32`'s 31.9–32.1 µs), but inside
        // a training update it was not (`perf` of five `pmnist-quick` tasks of `sgd`: gemm's 10%
        // of the samples became 10.5% in the kernel, packing, transposing and grouping). So a
        // product whose weights must be packed first needs more than 50 rows (a training batch
        // keeps gemm).
        // SAFETY (of the kernel calls below): sparse_rows_supported checked AVX2 and FMA.
        let wide = std::is_x86_feature_detected!("avx512f") && !narrow;
        let block = if wide { WIDE_BLOCK } else { BLOCK };
        let packed = scratch.packed_for == Some((version, n, k, block));
        let pack_cost = if packed { 0 } else { 500 * k * n };
        if !always_sparse && pack_cost >= 10 * m * k * n {
            return dense(dst);
        }
        // Kept entries of the same shape in the form the kernel reads (a name is a caller's
        // promise; the shape check keeps a broken promise from reading outside the weights).
        let kept = name
            .and_then(|name| scratch.kept.take(name))
            .filter(|kept| kept.shape == (m, k) && (wide || kept.listed));
        match kept {
            Some(kept) => scratch.entries = kept,
            // SAFETY: sparse_rows_supported checked that the CPU has AVX2 and FMA.
            None => unsafe { avx2::gather_nonzeros(&mut scratch.entries, &x[..m * k], (m, k)) },
        }
        let nonzero = scratch.entries.nonzero;
        let sparse = always_sparse || 20 * nonzero * n + pack_cost < 10 * m * k * n;
        if sparse && !packed {
            scratch.packed_for = None;
            if pack(scratch, &w[..n * k], Storage::RowMajor, (n, k), block) {
                scratch.packed_for = Some((version, n, k, block));
            }
        }
        if sparse && scratch.packed_for.is_some() {
            // SAFETY: as above (and AVX-512 where it is taken); the entries are m rows with
            // indices < k and W is packed for (n, k) in the kernel's blocks, dst holds m·n floats.
            unsafe {
                if wide {
                    avx512::sparse_rows(&mut dst[..m * n], scratch, (m, k, n), Store::Add)
                } else {
                    avx2::sparse_rows(&mut dst[..m * n], scratch, (m, k, n), Store::Add)
                }
            };
        } else {
            dense(dst);
        }
        if let Some(name) = name {
            scratch.kept.keep(name, std::mem::take(&mut scratch.entries));
        }
    }
}

/// `dst (m×n) = scale · aᵀ·b`, with `a` `k×m` and `b` `k×n` row-major: a sum of `k` outer products
/// (a weight gradient `∂Iᵀ·x`, or the rule learner's `hebb` and `elig`). [`matmul_scaled`]'s result
/// with `a` transposed, bit for bit, computed from the nonzero entries of one operand where that is
/// faster (a cost model, below): firing rates and spikes are mostly 0 (27% of a `pmnist-quick`
/// batch's first-layer rates are not), so are pooled pixels.
///
/// It is [`matmul_skipping_zeros`]'s kernel on the transposed product: row `i` of `dst` is the sum,
/// over the rows `r` where `a[r, i]` is nonzero in increasing order, of `a[r, i]·b[r, ..]`, one chain
/// per element as gemm sums it (or, from `b`'s entries, `dstᵀ` so computed and transposed back).
/// `scratch` must not be a forward pass's: it holds the other operand packed, which evicts any
/// packed weights.
pub fn outer_products_skipping_zeros(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    shape: (usize, usize, usize),
    scale: f32,
    scratch: &mut SparseScratch,
) {
    outer_products(dst, a, b, shape, scale, scratch, (false, false));
}

/// [`outer_products_skipping_zeros`]; `always_sparse` and `narrow` as in [`skipping_zeros`].
fn outer_products(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    scale: f32,
    scratch: &mut SparseScratch,
    (always_sparse, narrow): (bool, bool),
) {
    let dense = |dst: &mut [f32]| {
        matmul_scaled(
            dst,
            a,
            Storage::Transposed,
            b,
            Storage::RowMajor,
            (m, k, n),
            scale,
        )
    };
    if !sparse_rows_supported((m, k, n)) {
        return dense(dst);
    }
    assert!(dst.len() >= m * n && a.len() >= k * m && b.len() >= k * n);
    #[cfg(target_arch = "x86_64")]
    {
        let (a, b) = (&a[..k * m], &b[..k * n]);
        let from_a_cost = costs::from_a(nonzero(a), m, n);
        let from_b_cost = costs::from_b(nonzero(b), m, n);
        let from_a = from_a_cost <= from_b_cost;
        if !always_sparse && from_a_cost.min(from_b_cost) >= costs::gemm(m, k, n) {
            return dense(dst);
        }
        // The sparse operand s (k × p) and the other, d (k × q), read a row per entry of s.
        let (s, d, p, q) = if from_a { (a, b, m, n) } else { (b, a, n, m) };
        let wide = std::is_x86_feature_detected!("avx512f") && !narrow;
        // Both uses below write every element they read, so the buffer only grows (resizing it
        // between the two sizes refilled up to 176 KB with zeros at every product, 4 of 34 µs).
        let mut transposed = std::mem::take(&mut scratch.transposed);
        grow(&mut transposed, (p * k).max(n * m));
        let block = if wide { WIDE_BLOCK } else { BLOCK };
        if !sparse_operands(scratch, &mut transposed, s, d, (p, k, q), block) {
            scratch.transposed = transposed;
            return dense(dst);
        }
        // SAFETY (of the kernels): sparse_rows_supported checked AVX2 and FMA (and `wide`
        // AVX-512); the entries are p rows with indices < k, the packed operand is (q, k) in the
        // kernel's blocks, and the output holds p·q floats.
        let store = Store::Scaled(scale);
        let kernel = |out: &mut [f32], scratch: &mut SparseScratch| unsafe {
            if wide {
                avx512::sparse_rows(out, scratch, (p, k, q), store)
            } else {
                avx2::sparse_rows(out, scratch, (p, k, q), store)
            }
        };
        if from_a {
            kernel(&mut dst[..m * n], scratch);
        } else {
            // dstᵀ = bᵀ·a, then transposed into place.
            kernel(&mut transposed[..n * m], scratch);
            store_transposed(&mut dst[..m * n], &transposed[..n * m], m, false);
        }
        scratch.transposed = transposed;
    }
}

/// The number of entries of `x` that are not zero.
#[cfg(target_arch = "x86_64")]
fn nonzero(x: &[f32]) -> usize {
    let mut count = 0;
    count_nonzero(x, &mut count);
    count
}

/// The cost model of a sum of outer products `aᵀ·b` (`m × k × n`), in units of gemm's time per 16
/// multiply-adds, fitted on the AVX-512 kernel to `pmnist-quick`'s training batch (256 × 32 × 196,
/// gemm 34.4 µs) with each path forced (a local change), at densities from 5% to 70%: the kernel 4/3 per entry and 16
/// outputs (it loads its operand for every multiply-add, where gemm reuses registers), and a fixed
/// part that grows with the product: finding, grouping and packing the operands, the kernel's rows,
/// and from b's entries transposing the product back (from b, a dense: 16.2 + 40.5·d µs for a
/// density d of the pixels; from a, b dense: 12.4 + 44.6·d µs for a density d of a). So the pixels'
/// entries beat gemm below about 45% nonzero, where the fit of 819656e (3 per entry and 16 outputs,
/// 1/2 per element transposed back, made for the kernel before its AVX-512 groups) gave up at 27%
/// and left about one `pmnist-quick` batch in ten to gemm: 34–41 µs where the entries took about 27.
/// `cargo bench --bench train -- outer_products` measures points of both lines where the model
/// takes them (`dense-and-pixels-10%` … `40%`, `rates-5%-and-dense`, `rates-40%-and-dense`), gemm
/// (`gemm/dense`) and the model's choice past the crossing (`dense-and-pixels-55%`).
#[cfg(target_arch = "x86_64")]
mod costs {
    /// From `a`'s `nonzero` entries.
    pub(super) fn from_a(nonzero: usize, m: usize, n: usize) -> usize {
        4 * nonzero * n.div_ceil(16) / 3 + 3 * m * n / 4
    }

    /// From `b`'s `nonzero` entries, the product then transposed back.
    pub(super) fn from_b(nonzero: usize, m: usize, n: usize) -> usize {
        4 * nonzero * m.div_ceil(16) / 3 + m * n
    }

    /// By gemm.
    pub(super) fn gemm(m: usize, k: usize, n: usize) -> usize {
        m * k * n.div_ceil(16)
    }
}

/// The operands of a sum of outer products read from the entries of `s` (`k × p`): the other, `d`
/// (`k × q`), packed in blocks of `block` outputs, and `sᵀ` written into `transposed` (at least
/// `p·k` floats) and its nonzero entries listed. False where `d` holds a value that is not finite:
/// 0·∞ must stay NaN, and only gemm multiplies every pair. Needs AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
fn sparse_operands(
    scratch: &mut SparseScratch,
    transposed: &mut [f32],
    s: &[f32],
    d: &[f32],
    (p, k, q): (usize, usize, usize),
    block: usize,
) -> bool {
    // The operand is not a versioned weight matrix: nothing may reuse it packed.
    scratch.packed_for = None;
    // (Read in place by the AVX-512 kernel, with masked loads, it was slower: 30 against 29 µs
    // from a, 39 against 34 µs from b, `outer_products/skipping_zeros/rates`.)
    if !pack(scratch, d, Storage::Transposed, (q, k), block) {
        return false;
    }
    store_transposed(&mut transposed[..p * k], s, p, false);
    // SAFETY: the caller checked AVX2 and FMA (sparse_rows_supported); sᵀ is p rows of k.
    unsafe { avx2::gather_nonzeros(&mut scratch.entries, &transposed[..p * k], (p, k)) };
    true
}

/// `scale · aᵀ·b` ([`outer_products_skipping_zeros`]'s product, bit for bit) handed out [`WIDE_BLOCK`]
/// rows at a time, for a reader that uses each block while it is in cache: the rule learner's
/// first-layer `grad` and `elig` (`a` per unit, `b` the pixels), which the synapse program reads once.
/// Written out whole, each was three passes over a matrix the size of the weights (the kernel's
/// transposed product, transposing it back, the program reading it: 200 KB each on `pmnist-quick`);
/// by blocks, those passes run over 50 KB that stay in L2.
///
/// A block is the sparse kernel's block of outputs (the same chains as the whole product's, so the
/// same bits) transposed into place. Where the whole product would not come from `b`'s entries on
/// the AVX-512 kernel (no AVX-512, a shape gemm sums otherwise, a non-finite `a`, or `b` too dense
/// to pay), [`OuterProductRows::prepare`] computes it whole instead and [`OuterProductRows::whole`]
/// hands it out.
#[derive(Clone, Debug, Default)]
pub struct OuterProductRows {
    scratch: SparseScratch,
    /// (m, k, n) and the scale of the prepared product.
    shape: (usize, usize, usize),
    scale: f32,
    /// Whether blocks are computed on demand; otherwise `product` holds the whole product.
    by_blocks: bool,
    product: Vec<f32>,
}

impl OuterProductRows {
    /// Rows per block (the last may be shorter).
    pub const BLOCK_ROWS: usize = WIDE_BLOCK;

    /// Prepares `scale · aᵀ·b`, `a` `k×m` and `b` `k×n` row-major, for [`OuterProductRows::rows_into`]
    /// (`b`'s nonzero entries found and `a` packed, once for every block) or computes it whole.
    pub fn prepare(&mut self, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), scale: f32) {
        self.shape = (m, k, n);
        self.scale = scale;
        self.by_blocks = self.prepare_blocks(&a[..k * m], &b[..k * n]);
        if !self.by_blocks {
            grow(&mut self.product, m * n);
            outer_products_skipping_zeros(&mut self.product, a, b, (m, k, n), scale, &mut self.scratch);
        }
    }

    /// [`OuterProductRows::prepare`] for a product of `like`'s shape whose `b` is the one `like` was
    /// last prepared with (the same matrix: the rule learner's `grad` and `elig` both read the batch's
    /// pixels). Where `like` is computed by blocks, only `a` is packed: `b`'s entries are copied as
    /// `like` grouped them (transposing, listing and grouping them again took about 5 µs per
    /// `pmnist-quick` batch), so every block has the bits `prepare` would give it. Otherwise it is
    /// `prepare`.
    pub fn prepare_sharing(
        &mut self,
        like: &OuterProductRows,
        a: &[f32],
        b: &[f32],
        (m, k, n): (usize, usize, usize),
        scale: f32,
    ) {
        // The cost model's choice is `like`'s: the same entries and the same shape.
        if like.by_blocks && like.shape == (m, k, n) {
            self.shape = (m, k, n);
            self.scale = scale;
            self.scratch.packed_for = None;
            if pack(
                &mut self.scratch,
                &a[..k * m],
                Storage::Transposed,
                (m, k),
                WIDE_BLOCK,
            ) {
                self.scratch.entries.copy_groups_from(&like.scratch.entries);
                self.by_blocks = true;
                return;
            }
        }
        self.prepare(a, b, (m, k, n), scale);
    }

    /// Finds `b`'s entries and packs `a` where the blocks are computed one at a time (see the type's
    /// doc); false where they are not.
    fn prepare_blocks(&mut self, a: &[f32], b: &[f32]) -> bool {
        let (m, k, n) = self.shape;
        #[cfg(target_arch = "x86_64")]
        {
            if !sparse_rows_supported((m, k, n)) || !std::is_x86_feature_detected!("avx512f") {
                return false;
            }
            // `outer_products`' cost model, from b's entries or by gemm. From a's entries is not
            // weighed: the factors read by blocks (`Σ_t ∂I[t]`, `elig`'s weighted surrogate) are
            // dense, so from b's entries is never the dearer.
            if costs::from_b(nonzero(b), m, n) >= costs::gemm(m, k, n) {
                return false;
            }
            let mut transposed = std::mem::take(&mut self.scratch.transposed);
            grow(&mut transposed, n * k);
            let ready = sparse_operands(&mut self.scratch, &mut transposed, b, a, (n, k, m), WIDE_BLOCK);
            self.scratch.transposed = transposed;
            if ready {
                avx512::group(&mut self.scratch.entries, n, k);
            }
            ready
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (a, b, m, k, n);
            false
        }
    }

    /// (m, k, n) of the prepared product: `m × n`.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// The whole product, where [`OuterProductRows::prepare`] computed it whole.
    pub fn whole(&self) -> Option<&[f32]> {
        let (m, _, n) = self.shape;
        (!self.by_blocks).then(|| &self.product[..m * n])
    }

    /// Rows `start..start + out.len() / n` of the product into `out`, row-major, with `start` a
    /// multiple of [`OuterProductRows::BLOCK_ROWS`] and at most that many rows; `transposed` is
    /// scratch.
    pub fn rows_into(&self, start: usize, out: &mut [f32], transposed: &mut Vec<f32>) {
        let (m, _, n) = self.shape;
        let count = out.len() / n;
        assert!(
            start.is_multiple_of(Self::BLOCK_ROWS) && count <= Self::BLOCK_ROWS && start + count <= m,
            "rows {start}..{} of {m} are not one block",
            start + count
        );
        if !self.by_blocks {
            return out.copy_from_slice(&self.product[start * n..(start + count) * n]);
        }
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(count, Self::BLOCK_ROWS.min(m - start), "a whole block");
            grow(transposed, n * count);
            // SAFETY: prepare_blocks checked AVX-512 and grouped b's entries (n rows with indices
            // < k) and packed a for (m, k) in WIDE_BLOCK blocks; `transposed` holds n·count floats.
            unsafe {
                avx512::sparse_block(
                    &mut transposed[..n * count],
                    &self.scratch,
                    (n, self.shape.1, m),
                    start,
                    Store::Scaled(self.scale),
                )
            };
            store_transposed(out, &transposed[..n * count], count, false);
        }
    }
}

crate::snn::neuron::simd_or_portable! {
    /// The number of entries of `x` that are not zero (of either sign), into `count`, at the CPU's
    /// vector width: summed as 32-bit lanes in one pass (a `usize` count compiled to two 64-bit lanes,
    /// and sixteen lane counters over chunks of sixteen to a gather per lane).
    fn count_nonzero(x: &[f32], count: &mut usize) {
        // Parts below 2³² entries, so a 32-bit sum cannot overflow.
        *count = x
            .chunks(1 << 30)
            .map(|part| part.iter().map(|&v| u32::from(v != 0.0)).sum::<u32>() as usize)
            .sum();
    }
}

/// Packs `w` (`n × k`, stored as stated) into [`SparseScratch::packed`]'s layout. Returns whether
/// every weight is finite.
fn pack(
    scratch: &mut SparseScratch,
    w: &[f32],
    storage: Storage,
    (n, k): (usize, usize),
    block: usize,
) -> bool {
    let padded = n.div_ceil(8) * 8;
    // Every lane is written below (the padding with zeros), so no fill first, and the buffer only
    // grows (the outer products pack operands of two sizes in turn).
    grow(&mut scratch.packed, padded * k + 16);
    scratch.packed_start = scratch.packed.as_ptr().align_offset(64).min(16);
    let packed = &mut scratch.packed[scratch.packed_start..];
    let mut finite = true;
    for start in (0..n).step_by(block) {
        let width = block.min(padded - start);
        let real = width.min(n - start);
        let block = &mut packed[start * k..(start + width) * k];
        match storage {
            // A whole block is its rows of W transposed, by tiles (storing each weight to its own
            // line, 256 bytes after the last, took about 50 µs for 256 × 196 weights).
            Storage::RowMajor if real == width => {
                let rows = &w[start * k..(start + real) * k];
                finite &= rows.iter().fold(true, |all, v| all & v.is_finite());
                store_transposed(block, rows, k, false);
            }
            Storage::RowMajor => {
                block.fill(0.0);
                for (lane, row) in w[start * k..].chunks_exact(k).take(real).enumerate() {
                    for (i, &v) in row.iter().enumerate() {
                        finite &= v.is_finite();
                        block[i * width + lane] = v;
                    }
                }
            }
            // Wᵀ row-major: each input's weights for the block are contiguous already.
            Storage::Transposed => {
                for (packed_row, row) in block.chunks_exact_mut(width).zip(w.chunks_exact(n)) {
                    let row = &row[start..start + real];
                    // A fold, not `all`: without the early exit it runs at the vector width.
                    finite &= row.iter().fold(true, |all, v| all & v.is_finite());
                    packed_row[..real].copy_from_slice(row);
                    packed_row[real..].fill(0.0);
                }
            }
        }
    }
    finite
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BLOCK, Entries, SparseScratch, Store};

    /// The nonzero entries of `x` (`m` rows of `k`), listed (the AVX2 kernel's form).
    /// Eight at a time: the nonzero lanes are moved to the front of a register by a permutation
    /// looked up from the comparison's mask, and stored whole (no branch on where the zeros fall).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gather_nonzeros(entries: &mut Entries, x: &[f32], (m, k): (usize, usize)) {
        debug_assert_eq!(x.len(), m * k);
        let Entries {
            offsets,
            indices,
            values,
            ..
        } = entries;
        // A full register may be stored at the last count: 8 spare entries.
        indices.resize(x.len() + 8, 0);
        values.resize(x.len() + 8, 0.0);
        offsets.clear();
        offsets.push(0);
        let mut count = 0;
        let zero = _mm256_setzero_ps();
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for row in x.chunks_exact(k) {
            let mut chunks = row.chunks_exact(8);
            let mut base = 0;
            for chunk in chunks.by_ref() {
                // SAFETY: chunk holds 8 floats; indices and values hold count + 8 ≤ len entries
                // (count ≤ the entries read so far).
                unsafe {
                    let v = _mm256_loadu_ps(chunk.as_ptr());
                    let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as usize;
                    let order = _mm256_loadu_si256(COMPRESS[mask].as_ptr().cast());
                    let at = _mm256_add_epi32(lanes, _mm256_set1_epi32(base as i32));
                    _mm256_storeu_ps(values.as_mut_ptr().add(count), _mm256_permutevar8x32_ps(v, order));
                    _mm256_storeu_si256(
                        indices.as_mut_ptr().add(count).cast(),
                        _mm256_permutevar8x32_epi32(at, order),
                    );
                    count += mask.count_ones() as usize;
                }
                base += 8;
            }
            for (i, &v) in chunks.remainder().iter().enumerate() {
                indices[count] = (base + i) as u32;
                values[count] = v;
                count += usize::from(v != 0.0);
            }
            offsets.push(count);
        }
        entries.shape = (m, k);
        entries.nonzero = count;
        entries.listed = true;
        entries.grouped = false;
    }

    /// For each 8-bit mask, the lanes whose bit is set, in increasing order, then the others.
    static COMPRESS: [[u32; 8]; 256] = {
        let mut table = [[0u32; 8]; 256];
        let mut mask = 0;
        while mask < 256 {
            let mut next = 0;
            let mut lane = 0;
            while lane < 8 {
                if mask & (1 << lane) != 0 {
                    table[mask][next] = lane as u32;
                    next += 1;
                }
                lane += 1;
            }
            let mut lane = 0;
            while lane < 8 {
                if mask & (1 << lane) == 0 {
                    table[mask][next] = lane as u32;
                    next += 1;
                }
                lane += 1;
            }
            mask += 1;
        }
        table
    };

    /// `dst += x·Wᵀ` from the gathered entries and packed weights: block by block of outputs (the
    /// block's weights stay in L1), three rows at a time (independent FMA chains hide the FMA
    /// latency; interleaving rows' chains changes none of them), then `dst + acc`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sparse_rows(
        dst: &mut [f32],
        scratch: &SparseScratch,
        (m, k, n): (usize, usize, usize),
        store: Store,
    ) {
        let padded = n.div_ceil(8) * 8;
        for start in (0..n).step_by(BLOCK) {
            let width = BLOCK.min(padded - start);
            let block = Block {
                weights: &scratch.packed[scratch.packed_start + start * k..][..width * k],
                scratch,
                start,
                real: n.min(start + width) - start,
                n,
                store,
            };
            match width / 8 {
                4 => block.run::<4>(dst, m),
                3 => block.run::<3>(dst, m),
                2 => block.run::<2>(dst, m),
                _ => block.run::<1>(dst, m),
            }
        }
    }

    /// One block of outputs of [`sparse_rows`].
    struct Block<'a> {
        /// The block's packed weights: k rows of 8·R.
        weights: &'a [f32],
        scratch: &'a SparseScratch,
        /// Its first output.
        start: usize,
        /// Its outputs below n (the rest of its 8·R lanes are padding).
        real: usize,
        n: usize,
        store: Store,
    }

    impl Block<'_> {
        #[target_feature(enable = "avx2,fma")]
        fn run<const R: usize>(&self, dst: &mut [f32], m: usize) {
            let Entries {
                offsets,
                indices,
                values,
                ..
            } = &self.scratch.entries;
            let width = 8 * R;
            let weights = self.weights.as_ptr();
            // acc ← fma(value, W[start.., index], acc) for one entry.
            let step = |acc: &mut [__m256; R], index: u32, value: f32| {
                let v = _mm256_set1_ps(value);
                let at = index as usize * width;
                debug_assert!(at + width <= self.weights.len());
                for (j, a) in acc.iter_mut().enumerate() {
                    // SAFETY: indices are < k and the block holds k rows of `width` floats.
                    *a = _mm256_fmadd_ps(v, unsafe { _mm256_loadu_ps(weights.add(at + 8 * j)) }, *a);
                }
            };
            let store = |dst: &mut [f32], r: usize, acc: &[__m256; R]| {
                let out = &mut dst[r * self.n + self.start..r * self.n + self.start + self.real];
                let mut chunks = out.chunks_exact_mut(8);
                for (chunk, a) in chunks.by_ref().zip(acc) {
                    let d = chunk.as_mut_ptr();
                    // SAFETY: chunk holds exactly 8 floats.
                    unsafe {
                        let result = match self.store {
                            Store::Add => _mm256_add_ps(_mm256_loadu_ps(d), *a),
                            Store::Scaled(scale) => _mm256_mul_ps(_mm256_set1_ps(scale), *a),
                        };
                        _mm256_storeu_ps(d, result)
                    };
                }
                let rest = chunks.into_remainder();
                if !rest.is_empty() {
                    let mut sums = [0.0f32; 8];
                    // SAFETY: sums holds 8 floats.
                    unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), acc[self.real / 8]) };
                    for (d, s) in rest.iter_mut().zip(sums) {
                        *d = match self.store {
                            Store::Add => *d + s,
                            Store::Scaled(scale) => scale * s,
                        };
                    }
                }
            };
            // Three rows at a time: 3·R chains in flight (12 for a full block, enough to cover the
            // FMA's latency at two per cycle).
            let mut r = 0;
            while r < m {
                let rows = [r, r + 1, r + 2].map(|q| {
                    let range = if q < m { offsets[q]..offsets[q + 1] } else { 0..0 };
                    (&indices[range.clone()], &values[range])
                });
                let mut acc = [[_mm256_setzero_ps(); R]; 3];
                let common = rows.iter().map(|(i, _)| i.len()).min().unwrap_or(0);
                let [(i0, v0), (i1, v1), (i2, v2)] = rows;
                let heads = i0[..common].iter().zip(&v0[..common]);
                let heads = heads.zip(i1[..common].iter().zip(&v1[..common]));
                for ((e0, e1), e2) in heads.zip(i2[..common].iter().zip(&v2[..common])) {
                    step(&mut acc[0], *e0.0, *e0.1);
                    step(&mut acc[1], *e1.0, *e1.1);
                    step(&mut acc[2], *e2.0, *e2.1);
                }
                for ((i, v), a) in rows.iter().zip(acc.iter_mut()) {
                    for (&index, &value) in i[common..].iter().zip(&v[common..]) {
                        step(a, index, value);
                    }
                }
                for (q, a) in acc.iter().enumerate().take(m - r) {
                    store(dst, r + q, a);
                }
                r += 3;
            }
        }
    }
}

/// The sparse product with sixteen lanes per register, on the same chains as [`avx2::sparse_rows`]
/// (one fused multiply-add per entry and output, in increasing column order), so with the same bits.
///
/// It is bound by loads: per entry and row, the weights' registers plus the entry's column and
/// value. So the blocks are 64 outputs (four registers per entry, [`WIDE_BLOCK`]) and [`ROWS`] rows
/// run in lockstep (24 independent chains). The rows of a group must end together, or the rest of
/// the longer ones runs with four chains: rows are grouped in increasing order of their entry counts
/// (a counting sort), and each group's entries are interleaved (entry e of row 0, of row 1, …, so the
/// kernel walks one pointer) and padded to its longest row with zero entries (column 0, value 0).
/// A zero entry changes no chain: `fma(0, w, acc) = acc + (±0) = acc` for a finite `w` (packing
/// checked), since a chain never holds −0 (the module doc). (The AVX2 kernel, with three rows of
/// four registers, was measured both ways: over these groups it was slower, 270–290 µs against
/// 240–245 µs for `cargo bench --bench train -- first_layer/skipping_zeros/500`.)
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Entries, Entry, SparseScratch, Store, WIDE_BLOCK};

    /// Rows run in lockstep.
    pub(super) const ROWS: usize = 6;

    #[target_feature(enable = "avx512f")]
    pub(super) fn sparse_rows(
        dst: &mut [f32],
        scratch: &mut SparseScratch,
        (m, k, n): (usize, usize, usize),
        store: Store,
    ) {
        group(&mut scratch.entries, m, k);
        for start in (0..n).step_by(WIDE_BLOCK) {
            run_block(dst, scratch, k, n, start, (start, n), store);
        }
    }

    /// The outputs `start..` of one block (`WIDE_BLOCK` of `n`, or fewer at the end) for every row,
    /// into `dst` (`m` rows of as many floats as the block has outputs), from grouped entries.
    #[target_feature(enable = "avx512f")]
    pub(super) fn sparse_block(
        dst: &mut [f32],
        scratch: &SparseScratch,
        (m, k, n): (usize, usize, usize),
        start: usize,
        store: Store,
    ) {
        assert!(scratch.entries.grouped && scratch.entries.group_rows.len() == m);
        let real = WIDE_BLOCK.min(n - start);
        assert!(dst.len() >= m * real, "a block's outputs for every row");
        run_block(dst, scratch, k, n, start, (0, real), store);
    }

    /// The block of outputs from `start` of an `n`-output product, each row's stored from column
    /// `column` of a `dst` whose rows are `stride` floats apart.
    #[target_feature(enable = "avx512f")]
    fn run_block(
        dst: &mut [f32],
        scratch: &SparseScratch,
        k: usize,
        n: usize,
        start: usize,
        (column, stride): (usize, usize),
        store: Store,
    ) {
        let padded = n.div_ceil(8) * 8;
        let width = WIDE_BLOCK.min(padded - start);
        let real = n.min(start + width) - start;
        let block = Block {
            weights: &scratch.packed[scratch.packed_start + start * k..][..width * k],
            width,
            start: column,
            real,
            n: stride,
            store,
        };
        let entries = &scratch.entries;
        let groups = (
            &entries.interleaved[..],
            &entries.group_rows[..],
            &entries.group_starts[..],
        );
        match real.div_ceil(16) {
            4 => block.run::<4>(dst, groups),
            3 => block.run::<3>(dst, groups),
            2 => block.run::<2>(dst, groups),
            _ => block.run::<1>(dst, groups),
        }
    }

    /// Groups the entries for the kernel, unless they are already.
    pub(super) fn group(entries: &mut Entries, m: usize, k: usize) {
        if !entries.grouped {
            interleave(entries, m, k);
        }
    }

    /// Groups the listed entries (see the module doc).
    fn interleave(entries: &mut Entries, m: usize, k: usize) {
        let Entries {
            offsets,
            indices,
            values,
            interleaved,
            group_rows,
            group_starts,
            ..
        } = entries;
        let count = |r: usize| offsets[r + 1] - offsets[r];
        // Counting sort of the rows by entry count (at most k each).
        let mut first = vec![0usize; k + 2];
        for r in 0..m {
            first[count(r) + 1] += 1;
        }
        for c in 1..first.len() {
            first[c] += first[c - 1];
        }
        group_rows.clear();
        group_rows.resize(m, 0);
        for r in 0..m {
            let at = &mut first[count(r)];
            group_rows[*at] = r as u32;
            *at += 1;
        }
        interleaved.clear();
        group_starts.clear();
        group_starts.push(0);
        for group in group_rows.chunks(ROWS) {
            let longest = count(*group.last().expect("chunks are not empty") as usize);
            let start = interleaved.len();
            interleaved.resize(start + longest * ROWS, Entry::default());
            let slots = &mut interleaved[start..];
            for (q, &r) in group.iter().enumerate() {
                let range = offsets[r as usize]..offsets[r as usize + 1];
                for (e, (&index, &value)) in indices[range.clone()].iter().zip(&values[range]).enumerate() {
                    slots[e * ROWS + q] = Entry { index, value };
                }
            }
            group_starts.push(interleaved.len());
        }
        entries.grouped = true;
    }

    /// One block of outputs: its packed weights (k rows of `width` floats).
    struct Block<'a> {
        weights: &'a [f32],
        width: usize,
        /// The column of `dst` its first output goes to.
        start: usize,
        /// Its outputs below the product's last (the rest of its lanes are padding).
        real: usize,
        /// Floats between two rows of `dst`.
        n: usize,
        store: Store,
    }

    impl Block<'_> {
        /// `R` registers per row: the block's real outputs fit in `16·R` lanes. The last register
        /// loads and stores only the lanes below `real` (masked; packing padded the rows with zeros
        /// to `width`, but `dst` ends at `n`).
        #[target_feature(enable = "avx512f")]
        fn run<const R: usize>(
            &self,
            dst: &mut [f32],
            (entries, rows, starts): (&[Entry], &[u32], &[usize]),
        ) {
            let width = self.width;
            let weights = self.weights.as_ptr();
            let last: __mmask16 = ((1u32 << (self.real - 16 * (R - 1))) - 1) as u16;
            let mask = |j: usize| if j + 1 == R { last } else { u16::MAX };
            // Zeroed once here and again as each group's sums are stored: zeroed at the top of every
            // group, the array was filled in memory (a memset) and loaded back into registers.
            let mut acc = [[_mm512_setzero_ps(); R]; ROWS];
            for (group, span) in rows.chunks(ROWS).zip(starts.windows(2)) {
                let group_entries = &entries[span[0]..span[1]];
                for slots in group_entries.chunks_exact(ROWS) {
                    for (a, entry) in acc.iter_mut().zip(slots) {
                        let v = _mm512_set1_ps(entry.value);
                        let at = entry.index as usize * width;
                        debug_assert!(
                            at + 16 * (R - 1) + mask(R - 1).count_ones() as usize <= self.weights.len()
                        );
                        for (j, a) in a.iter_mut().enumerate() {
                            // SAFETY: indices are < k and the block holds k rows of `width` floats;
                            // the masked lanes of the last register are below `real` ≤ `width`.
                            let w = unsafe { _mm512_maskz_loadu_ps(mask(j), weights.add(at + 16 * j)) };
                            *a = _mm512_fmadd_ps(v, w, *a);
                        }
                    }
                }
                for (a, &r) in acc.iter_mut().zip(group) {
                    let out = &mut dst[r as usize * self.n + self.start..][..self.real];
                    for (j, a) in a.iter_mut().enumerate() {
                        // SAFETY: the masked lanes are real outputs of row r, inside `out`.
                        unsafe {
                            let d = out.as_mut_ptr().add(16 * j);
                            let result = match self.store {
                                Store::Add => _mm512_add_ps(_mm512_maskz_loadu_ps(mask(j), d), *a),
                                Store::Scaled(scale) => _mm512_mul_ps(_mm512_set1_ps(scale), *a),
                            };
                            _mm512_mask_storeu_ps(d, mask(j), result);
                        }
                        *a = _mm512_setzero_ps();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: uniform in [0, 1).
    fn uniform(state: &mut u64) -> f32 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    }

    #[test]
    fn count_nonzero_counts_every_entry_that_is_not_zero_at_every_length() {
        let mut state = 7u64;
        let specials = [
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            f32::MIN_POSITIVE / 4.0,
        ];
        for len in 0..100 {
            let x: Vec<f32> = (0..len)
                .map(|_| {
                    let u = uniform(&mut state);
                    if u < 0.5 {
                        specials[(u * 12.0) as usize]
                    } else {
                        value(&mut state)
                    }
                })
                .collect();
            let mut count = usize::MAX;
            count_nonzero(&x, &mut count);
            assert_eq!(count, x.iter().filter(|&&v| v != 0.0).count(), "length {len}");
        }
    }

    /// Values of every magnitude and sign, so that any other summation order would round differently.
    fn value(state: &mut u64) -> f32 {
        let mantissa = uniform(state) * 2.0 - 1.0;
        mantissa * 2f32.powi((uniform(state) * 24.0) as i32 - 12)
    }

    /// `len` values, `density` of them [`value`]s and the rest zeros of either sign.
    fn operand(state: &mut u64, len: usize, density: f32) -> Vec<f32> {
        (0..len)
            .map(|_| match uniform(state) {
                u if u < density => value(state),
                u if u < density + (1.0 - density) / 2.0 => 0.0,
                _ => -0.0,
            })
            .collect()
    }

    #[test]
    fn the_sparse_kernel_gives_gemms_bits_wherever_supported() {
        if !sparse_rows_supported((500, 196, 256)) {
            eprintln!("no AVX2 + FMA here: the sparse kernel is never taken");
            return;
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut scratch = SparseScratch::default();
        let mut compared = 0;
        let mut version = 0;
        for &m in &[2, 3, 17, 32, 64, 257] {
            for &k in &[3, 4, 9, 196, 511, 512] {
                for &n in &[2, 8, 9, 10, 31, 32, 33, 63, 64, 65, 100, 129, 256] {
                    if !sparse_rows_supported((m, k, n)) {
                        assert!(m * n <= 256, "{m}×{k}×{n} should be supported");
                        continue;
                    }
                    for density in [0.0, 0.25, 1.0] {
                        let x = operand(&mut state, m * k, density);
                        let w: Vec<f32> = (0..n * k).map(|_| value(&mut state)).collect();
                        version += 1;
                        let bias: Vec<f32> = (0..m * n).map(|_| value(&mut state)).collect();
                        let mut want = bias.clone();
                        matmul(
                            &mut want,
                            &x,
                            Storage::RowMajor,
                            &w,
                            Storage::Transposed,
                            (m, k, n),
                            true,
                        );
                        // Unnamed, then named: found, then kept (and found again for the AVX2
                        // kernel, whose form kept entries drop).
                        let choices = [(true, false), (true, true), (false, false)];
                        let names = [None, Some(version as usize), Some(version as usize)];
                        for (choice, name) in choices.into_iter().flat_map(|c| names.map(|n| (c, n))) {
                            let mut got = bias.clone();
                            let (x, w) = ((&x[..], name), (&w[..], version));
                            skipping_zeros(&mut got, x, w, (m, k, n), &mut scratch, choice);
                            for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                                assert_eq!(
                                    g.to_bits(),
                                    w.to_bits(),
                                    "{m}×{k}×{n}, density {density}, {choice:?}, {name:?}, element {e}"
                                );
                            }
                        }
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 300, "only {compared} shapes compared");
    }

    /// gemm's `scale · aᵀ·b`, `a` `k×m` and `b` `k×n`: what the sums of outer products must equal.
    fn gemm_outer_products(a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), scale: f32) -> Vec<f32> {
        let mut product = vec![f32::NAN; m * n];
        matmul_scaled(
            &mut product,
            a,
            Storage::Transposed,
            b,
            Storage::RowMajor,
            (m, k, n),
            scale,
        );
        product
    }

    /// x with about a quarter of its entries nonzero.
    fn sparse_input(state: &mut u64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| if uniform(state) < 0.25 { value(state) } else { 0.0 })
            .collect()
    }

    #[test]
    fn outer_products_give_gemms_bits_wherever_supported() {
        if !sparse_rows_supported((32, 32, 196)) {
            eprintln!("no AVX2 + FMA here: the sparse kernel is never taken");
            return;
        }
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut scratch = SparseScratch::default();
        let mut compared = 0;
        for &m in &[2, 10, 17, 64, 256] {
            for &k in &[3, 8, 32, 256, 512] {
                for &n in &[2, 9, 10, 33, 64, 196, 256] {
                    if !sparse_rows_supported((m, k, n)) {
                        continue;
                    }
                    for (a_density, b_density) in
                        [(0.25, 1.0), (1.0, 0.25), (0.1, 0.3), (0.0, 1.0), (1.0, 1.0)]
                    {
                        let a = operand(&mut state, k * m, a_density);
                        let b = operand(&mut state, k * n, b_density);
                        for scale in [1.0, 1.0 / 256.0, -0.3] {
                            let want = gemm_outer_products(&a, &b, (m, k, n), scale);
                            for choice in [(true, false), (true, true), (false, false)] {
                                let mut got = vec![f32::NAN; m * n];
                                outer_products(&mut got, &a, &b, (m, k, n), scale, &mut scratch, choice);
                                for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                                    assert_eq!(
                                        g.to_bits(),
                                        w.to_bits(),
                                        "{m}×{k}×{n}, densities {a_density} {b_density}, scale {scale}, {choice:?}, element {e}"
                                    );
                                }
                            }
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert!(compared > 300, "only {compared} products compared");
        // 0·∞ stays NaN, as gemm multiplies it, whichever operand holds the ∞.
        let (m, k, n) = (8, 8, 64);
        for infinite_in_a in [false, true] {
            let mut a = vec![0.0; k * m];
            let mut b = vec![0.5; k * n];
            if infinite_in_a {
                (a, b) = (vec![0.5; k * m], vec![0.0; k * n]);
                a[0] = f32::INFINITY;
            } else {
                b[0] = f32::INFINITY;
            }
            let mut got = vec![1.0; m * n];
            outer_products(&mut got, &a, &b, (m, k, n), 1.0, &mut scratch, (true, false));
            assert!(got[0].is_nan(), "0·∞ is NaN in gemm: {}", got[0]);
        }
    }

    #[test]
    fn outer_product_rows_give_the_whole_products_bits_block_by_block() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let (mut rows, mut like) = (OuterProductRows::default(), OuterProductRows::default());
        let (mut by_blocks, mut whole) = (0, 0);
        for &m in &[2, 10, 63, 64, 65, 130, 256] {
            for &k in &[1, 3, 32, 512] {
                for &n in &[2, 9, 196] {
                    // b sparse (the pixels: by blocks where AVX-512 is), b dense (whole), a with
                    // an infinity (whole: 0·∞ must stay NaN), a with zeros (firing rates: `hebb`).
                    let cases = [
                        (0.1, false, 1.0),
                        (0.25, false, 1.0),
                        (1.0, false, 1.0),
                        (0.25, true, 1.0),
                        (0.25, false, 0.27),
                    ];
                    for (b_density, infinite, a_density) in cases {
                        let mut a = operand(&mut state, k * m, a_density);
                        if infinite {
                            a[k * m / 2] = f32::INFINITY;
                        }
                        let b = operand(&mut state, k * n, b_density);
                        // Sharing b's entries with a product of another a (whole where that a is
                        // not finite, so this one finds its own): first, while `rows` still holds
                        // the last b's entries.
                        let mut a_like = operand(&mut state, k * m, 1.0);
                        if b_density == 0.1 {
                            a_like[0] = f32::NEG_INFINITY;
                        }
                        for (scale, sharing) in [(0.5, true), (1.0, false), (1.0 / 256.0, false)] {
                            let want = gemm_outer_products(&a, &b, (m, k, n), scale);
                            if sharing {
                                like.prepare(&a_like, &b, (m, k, n), 2.0);
                                rows.prepare_sharing(&like, &a, &b, (m, k, n), scale);
                            } else {
                                rows.prepare(&a, &b, (m, k, n), scale);
                            }
                            match rows.whole() {
                                Some(got) => {
                                    whole += 1;
                                    let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
                                    assert!(same, "{m}×{k}×{n}, whole, density {b_density}");
                                }
                                None => by_blocks += 1,
                            }
                            let mut transposed = Vec::new();
                            for start in (0..m).step_by(OuterProductRows::BLOCK_ROWS) {
                                let count = OuterProductRows::BLOCK_ROWS.min(m - start);
                                let mut got = vec![f32::NAN; count * n];
                                rows.rows_into(start, &mut got, &mut transposed);
                                for (e, (g, w)) in got.iter().zip(&want[start * n..]).enumerate() {
                                    assert_eq!(
                                        g.to_bits(),
                                        w.to_bits(),
                                        "{m}×{k}×{n}, density {b_density}, infinite {infinite}, scale {scale}, \
                                         sharing {sharing}, rows from {start}, element {e}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(whole > 100, "only {whole} products computed whole");
        if sparse_rows_supported((64, 32, 196)) && std::is_x86_feature_detected!("avx512f") {
            assert!(by_blocks > 50, "only {by_blocks} products by blocks");
        }
    }

    #[test]
    fn a_named_input_is_read_once_and_its_entries_kept_within_the_budget() {
        let (m, k, n) = (64, 196, 256);
        if !sparse_rows_supported((m, k, n)) {
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let w: Vec<f32> = (0..n * k).map(|_| value(&mut state)).collect();
        let inputs: Vec<Vec<f32>> = (0..3).map(|_| sparse_input(&mut state, m * k)).collect();
        let product = |scratch: &mut SparseScratch, x: &[f32], name| {
            let mut dst = vec![0.0; m * n];
            skipping_zeros(&mut dst, (x, name), (&w, 1), (m, k, n), scratch, (true, false));
            dst
        };
        let alone: Vec<Vec<f32>> = inputs
            .iter()
            .map(|x| product(&mut SparseScratch::default(), x, None))
            .collect();
        let mut scratch = SparseScratch::default();
        assert_eq!(product(&mut scratch, &inputs[0], Some(0)), alone[0]);
        // The name's promise broken on purpose: the entries kept under it are what is read.
        assert_eq!(product(&mut scratch, &inputs[1], Some(0)), alone[0]);
        assert_eq!(product(&mut scratch, &inputs[1], Some(1)), alone[1]);
        assert_eq!(product(&mut scratch, &inputs[1], None), alone[1]);
        // A budget of two inputs' entries: a third drops the least recently used.
        let one = scratch.kept.map[&0].0.bytes();
        scratch.kept.budget = 2 * one + one / 2;
        assert_eq!(product(&mut scratch, &inputs[0], Some(0)), alone[0]);
        assert_eq!(product(&mut scratch, &inputs[2], Some(2)), alone[2]);
        let mut names: Vec<_> = scratch.kept.map.keys().copied().collect();
        names.sort();
        assert_eq!(names, [0, 2]);
        assert!(scratch.kept.bytes <= scratch.kept.budget);
        assert_eq!(
            scratch.kept.bytes,
            scratch.kept.map.values().map(|(e, _)| e.bytes()).sum::<usize>()
        );
    }

    #[test]
    fn a_non_finite_weight_still_spreads_nan_as_gemm_does() {
        let (m, k, n) = (4, 8, 96);
        let x = vec![0.0; m * k];
        let mut w = vec![0.5; n * k];
        w[3] = f32::INFINITY;
        let mut got = vec![1.0; m * n];
        skipping_zeros(
            &mut got,
            (&x, None),
            (&w, 0),
            (m, k, n),
            &mut SparseScratch::default(),
            (true, false),
        );
        assert!(got[0].is_nan(), "0·∞ is NaN in gemm: {}", got[0]);
    }

    #[test]
    fn shapes_gemm_sums_otherwise_are_refused() {
        for shape in [
            (1, 196, 256),
            (500, 196, 1),
            (500, 2, 256),
            (500, 513, 256),
            (10, 196, 25),
        ] {
            assert!(!sparse_rows_supported(shape), "{shape:?}");
        }
    }
}
