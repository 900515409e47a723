// lgdiff's fused CPU kernels (private; built and loaded by lgdiff/_native/__init__.py).
//
// One pass over memory: each kernel reads the links [B, D, *L, N, N] (complex, interleaved re/im) and writes
// only its result, keeping every N x N matrix in registers / L1. Sites are processed W at a time in SIMD
// lanes (GCC/Clang vector extensions: one lane per site, so every complex multiply-add is a W-wide FMA);
// neighbours come from per-call periodic index tables. No OpenMP: each call computes a range of blocks, and the
// Python side splits the blocks over threads (ctypes releases the GIL during the call).
// Plain C ABI (extern "C"), no torch headers: compiles in about a second and is called through ctypes.

#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

namespace {

template <typename T, int W>
struct Vec {
    typedef T type __attribute__((vector_size(sizeof(T) * W)));
};

template <typename T, int N, int W>
struct Mat {
    typedef typename Vec<T, W>::type V;
    V re[N][N];
    V im[N][N];
};

// {p[0][k], ..., p[W-1][k]} built in registers (writing lanes one by one through memory stalls store forwarding)
template <typename T, int W, std::size_t... L>
inline typename Vec<T, W>::type gather(const T* const* p, int k, std::index_sequence<L...>) {
    return typename Vec<T, W>::type{p[L][k]...};
}

template <typename T, int N, int W>
inline void load(Mat<T, N, W>& m, const T* const* p) {
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) {
            m.re[i][j] = gather<T, W>(p, 2 * (i * N + j), std::make_index_sequence<W>{});
            m.im[i][j] = gather<T, W>(p, 2 * (i * N + j) + 1, std::make_index_sequence<W>{});
        }
}

template <typename T, int N, int W>
inline void zero(Mat<T, N, W>& m) {
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) {
            m.re[i][j] = typename Vec<T, W>::type{};
            m.im[i][j] = typename Vec<T, W>::type{};
        }
}

// C (+)= A B
template <bool ACC, typename T, int N, int W>
inline void mul_nn(Mat<T, N, W>& c, const Mat<T, N, W>& a, const Mat<T, N, W>& b) {
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) {
            auto r = a.re[i][0] * b.re[0][j] - a.im[i][0] * b.im[0][j];
            auto s = a.re[i][0] * b.im[0][j] + a.im[i][0] * b.re[0][j];
            for (int k = 1; k < N; ++k) {
                r += a.re[i][k] * b.re[k][j] - a.im[i][k] * b.im[k][j];
                s += a.re[i][k] * b.im[k][j] + a.im[i][k] * b.re[k][j];
            }
            if (ACC) { c.re[i][j] += r; c.im[i][j] += s; } else { c.re[i][j] = r; c.im[i][j] = s; }
        }
}

// C (+)= A B^dagger:  C_ij = sum_k A_ik conj(B_jk)
template <bool ACC, typename T, int N, int W>
inline void mul_nd(Mat<T, N, W>& c, const Mat<T, N, W>& a, const Mat<T, N, W>& b) {
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) {
            auto r = a.re[i][0] * b.re[j][0] + a.im[i][0] * b.im[j][0];
            auto s = a.im[i][0] * b.re[j][0] - a.re[i][0] * b.im[j][0];
            for (int k = 1; k < N; ++k) {
                r += a.re[i][k] * b.re[j][k] + a.im[i][k] * b.im[j][k];
                s += a.im[i][k] * b.re[j][k] - a.re[i][k] * b.im[j][k];
            }
            if (ACC) { c.re[i][j] += r; c.im[i][j] += s; } else { c.re[i][j] = r; c.im[i][j] = s; }
        }
}

// C (+)= A^dagger B:  C_ij = sum_k conj(A_ki) B_kj
template <bool ACC, typename T, int N, int W>
inline void mul_dn(Mat<T, N, W>& c, const Mat<T, N, W>& a, const Mat<T, N, W>& b) {
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) {
            auto r = a.re[0][i] * b.re[0][j] + a.im[0][i] * b.im[0][j];
            auto s = a.re[0][i] * b.im[0][j] - a.im[0][i] * b.re[0][j];
            for (int k = 1; k < N; ++k) {
                r += a.re[k][i] * b.re[k][j] + a.im[k][i] * b.im[k][j];
                s += a.re[k][i] * b.im[k][j] - a.im[k][i] * b.re[k][j];
            }
            if (ACC) { c.re[i][j] += r; c.im[i][j] += s; } else { c.re[i][j] = r; c.im[i][j] = s; }
        }
}

// C (+)= A^dagger B^dagger = (B A)^dagger:  C_ij = sum_k conj(A_ki) conj(B_jk)
template <bool ACC, typename T, int N, int W>
inline void mul_dd(Mat<T, N, W>& c, const Mat<T, N, W>& a, const Mat<T, N, W>& b) {
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) {
            auto r = a.re[0][i] * b.re[j][0] - a.im[0][i] * b.im[j][0];
            auto s = a.re[0][i] * b.im[j][0] + a.im[0][i] * b.re[j][0];
            for (int k = 1; k < N; ++k) {
                r += a.re[k][i] * b.re[j][k] - a.im[k][i] * b.im[j][k];
                s += a.re[k][i] * b.im[j][k] + a.im[k][i] * b.re[j][k];
            }
            if (ACC) { c.re[i][j] += r; c.im[i][j] -= s; } else { c.re[i][j] = r; c.im[i][j] = -s; }
        }
}

// Periodic neighbour tables of one configuration: fwd[mu * V + s] = s + mu, bwd[mu * V + s] = s - mu, in 32 bits (at
// 16^4 the tables share the inner caches with the links: 64-bit tables made the force 10 % slower). (Visiting the
// sites in tiles of the middle axes, so that the neighbours along the slowest axis stay in the inner caches, was
// measured at L = 4..16 and gained nothing: docs/performance.md.)
struct Geometry {
    int d;
    int64_t volume;
    std::vector<int64_t> shape;
    std::vector<int32_t> fwd, bwd;
    Geometry(int d_, const int64_t* shape_) : d(d_), volume(1), shape(shape_, shape_ + d_) {
        for (int mu = 0; mu < d; ++mu) volume *= shape[mu];
        fwd.resize(d * volume);
        bwd.resize(d * volume);
        int64_t stride = 1;
        for (int mu = d - 1; mu >= 0; --mu) {  // row-major: the last axis is the fastest
            const int64_t n = shape[mu];
            for (int64_t s = 0; s < volume; ++s) {
                const int64_t x = (s / stride) % n;
                fwd[mu * volume + s] = s + ((x + 1 == n) ? (1 - n) * stride : stride);
                bwd[mu * volume + s] = s + ((x == 0) ? (n - 1) * stride : -stride);
            }
            stride *= n;
        }
    }

    // The geometry of the last call on this thread (kernels are called many times on one lattice)
    static const Geometry& cached(int d, const int64_t* shape) {
        thread_local std::unique_ptr<Geometry> last;
        if (!last || last->d != d || !std::equal(shape, shape + d, last->shape.begin())) last.reset(new Geometry(d, shape));
        return *last;
    }
};

constexpr int MAX_D = 8;

template <typename T, int N, int W>
struct Kernels {
    typedef Mat<T, N, W> M;
    typedef typename Vec<T, W>::type V;
    static constexpr int64_t LINK = 2 * N * N;  // reals per link

    // The W lanes of block `blk`: global sites blk * W + l (= b * volume + s), the tail clamped to the last site.
    static void lanes_of(const Geometry& g, int64_t blk, int64_t total, int64_t* b, int64_t* s) {
        const int64_t volume = g.volume;
        for (int l = 0; l < W; ++l) {
            int64_t gi = blk * W + l;
            if (gi >= total) gi = total - 1;
            b[l] = gi / volume;
            s[l] = gi % volume;
        }
    }

    // U_mu at the given sites of the lanes' configurations
    static inline void load_link(M& m, const T* u, const Geometry& g, const int64_t* b, int mu, const int64_t* site) {
        const T* p[W];
        for (int l = 0; l < W; ++l) p[l] = u + ((b[l] * g.d + mu) * g.volume + site[l]) * LINK;
        load<T, N, W>(m, p);
    }

    static inline void step(const Geometry& g, const std::vector<int32_t>& table, int mu, const int64_t* from,
                            int64_t* to) {
        for (int l = 0; l < W; ++l) to[l] = table[mu * g.volume + from[l]];
    }

    // stap += the lower staple of U_mu(x) in plane (mu, nu): (U_mu(x-nu) U_nu(x-nu+mu))^dag U_nu(x-nu), with
    // u_nu_back = U_nu(x-nu) already loaded
    static inline void add_lower_staple(M& stap, const T* u, const Geometry& g, const int64_t* b, const int64_t* here,
                                        int mu, int nu, const M& u_nu_back) {
        M a, c, t;
        int64_t s1[W], s2[W];
        step(g, g.bwd, nu, here, s1);
        step(g, g.fwd, mu, s1, s2);
        load_link(a, u, g, b, mu, s1);
        load_link(c, u, g, b, nu, s2);
        mul_nn<false>(t, a, c);
        mul_dn<true>(stap, t, u_nu_back);
    }

    // stap = A_mu(x) = sum_{nu != mu} U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu),
    // with local[nu] = U_nu(x) already loaded
    static inline void staple_sum(M& stap, const T* u, const Geometry& g, const int64_t* b, const int64_t* here, int mu,
                                  const M* local) {
        M a, c, t;
        int64_t s1[W], s2[W];
        zero(stap);
        step(g, g.fwd, mu, here, s1);
        for (int nu = 0; nu < g.d; ++nu) {
            if (nu == mu) continue;
            // upper: U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
            step(g, g.fwd, nu, here, s2);
            load_link(a, u, g, b, nu, s1);
            load_link(c, u, g, b, mu, s2);
            mul_nd<false>(t, a, c);
            mul_nd<true>(stap, t, local[nu]);
            step(g, g.bwd, nu, here, s2);
            load_link(c, u, g, b, nu, s2);
            add_lower_staple(stap, u, g, b, here, mu, nu, c);
        }
    }

    static inline void store(T* o, const M& m, int l) {
        for (int i = 0; i < N; ++i)
            for (int j = 0; j < N; ++j) {
                o[2 * (i * N + j)] = m.re[i][j][l];
                o[2 * (i * N + j) + 1] = m.im[i][j][l];
            }
    }

    // out[b, s] = A_mu(s) (one direction), [B, V, N, N], for the blocks that start in [site0, site1)
    static void staples(const T* u, T* out, int64_t batch, const Geometry& g, int mu, int64_t site0, int64_t site1) {
        const int64_t total = batch * g.volume;
        M local[MAX_D], stap;
        int64_t b[W], here[W];
        for (int64_t blk = (site0 + W - 1) / W; blk < (site1 + W - 1) / W; ++blk) {
            lanes_of(g, blk, total, b, here);
            for (int nu = 0; nu < g.d; ++nu)
                if (nu != mu) load_link(local[nu], u, g, b, nu, here);
            staple_sum(stap, u, g, b, here, mu, local);
            for (int l = 0; l < W && blk * W + l < total; ++l) store(out + (b[l] * g.volume + here[l]) * LINK, stap, l);
        }
    }

    // out[b, s] = sum_{mu<nu} Re tr U_{mu nu}(s) for the blocks that start in [site0, site1)
    static void plaquette_trace_sum(const T* u, T* out, int64_t batch, const Geometry& g, int64_t site0,
                                    int64_t site1) {
        const int64_t total = batch * g.volume;
        M local[MAX_D], a, x, y;
        int64_t b[W], here[W], there[W];
        for (int64_t blk = (site0 + W - 1) / W; blk < (site1 + W - 1) / W; ++blk) {
            lanes_of(g, blk, total, b, here);
            for (int mu = 0; mu < g.d; ++mu) load_link(local[mu], u, g, b, mu, here);
            V acc = {};
            for (int mu = 0; mu < g.d; ++mu)
                for (int nu = mu + 1; nu < g.d; ++nu) {
                    // X = U_mu(x) U_nu(x+mu), Y = U_nu(x) U_mu(x+nu); Re tr X Y^dagger = sum_ij Re X_ij conj(Y_ij)
                    step(g, g.fwd, mu, here, there);
                    load_link(a, u, g, b, nu, there);
                    mul_nn<false>(x, local[mu], a);
                    step(g, g.fwd, nu, here, there);
                    load_link(a, u, g, b, mu, there);
                    mul_nn<false>(y, local[nu], a);
                    for (int i = 0; i < N; ++i)
                        for (int j = 0; j < N; ++j) acc += x.re[i][j] * y.re[i][j] + x.im[i][j] * y.im[i][j];
                }
            for (int l = 0; l < W && blk * W + l < total; ++l) out[b[l] * g.volume + here[l]] = acc[l];
        }
    }

    // out[b, mu, s] = scale P(U_mu(s) A_mu(s)) with A the staple sum, P(M) = (M - M^dagger) / 2 minus its
    // trace / N if traceless, for the blocks that start in [site0, site1)
    static void projected_closed_staples(const T* u, T* out, int64_t batch, const Geometry& g, T scale,
                                         bool traceless, int64_t site0, int64_t site1) {
        const int64_t total = batch * g.volume;
        const T half = scale / 2;
        // local[mu] = U_mu(x), back[mu] = U_mu(x - mu), stap[mu] = A_mu(x)
        M local[MAX_D], back[MAX_D], stap[MAX_D], a, c, t;
        int64_t b[W], here[W], s1[W], s2[W];
        for (int64_t blk = (site0 + W - 1) / W; blk < (site1 + W - 1) / W; ++blk) {
            lanes_of(g, blk, total, b, here);
            for (int mu = 0; mu < g.d; ++mu) {
                load_link(local[mu], u, g, b, mu, here);
                step(g, g.bwd, mu, here, s1);
                load_link(back[mu], u, g, b, mu, s1);
                zero(stap[mu]);
            }
            // plane by plane: the two upper staples share T = U_nu(x+mu) U_mu(x+nu)^dag, since
            // U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag = T U_nu(x)^dag and U_mu(x+nu) U_nu(x+mu)^dag U_mu(x)^dag = T^dag U_mu(x)^dag
            for (int mu = 0; mu < g.d; ++mu)
                for (int nu = mu + 1; nu < g.d; ++nu) {
                    step(g, g.fwd, mu, here, s1);
                    step(g, g.fwd, nu, here, s2);
                    load_link(a, u, g, b, nu, s1);
                    load_link(c, u, g, b, mu, s2);
                    mul_nd<false>(t, a, c);
                    mul_nd<true>(stap[mu], t, local[nu]);
                    mul_dd<true>(stap[nu], t, local[mu]);
                    add_lower_staple(stap[mu], u, g, b, here, mu, nu, back[nu]);
                    add_lower_staple(stap[nu], u, g, b, here, nu, mu, back[mu]);
                }
            for (int mu = 0; mu < g.d; ++mu) {
                mul_nn<false>(t, local[mu], stap[mu]);
                // P = half (M - M^dagger): re_ij = half (Re M_ij - Re M_ji), im_ij = half (Im M_ij + Im M_ji)
                M p;
                for (int i = 0; i < N; ++i)
                    for (int j = 0; j < N; ++j) {
                        p.re[i][j] = half * (t.re[i][j] - t.re[j][i]);
                        p.im[i][j] = half * (t.im[i][j] + t.im[j][i]);
                    }
                if (traceless) {
                    V tr = p.im[0][0];
                    for (int i = 1; i < N; ++i) tr += p.im[i][i];
                    tr = tr / (T)N;
                    for (int i = 0; i < N; ++i) p.im[i][i] -= tr;
                }
                for (int l = 0; l < W && blk * W + l < total; ++l)
                    store(out + ((b[l] * g.d + mu) * g.volume + here[l]) * LINK, p, l);
            }
        }
    }
};

// Blocks of W sites (global site index b V + s); one call computes the blocks that start in the sites [s0, s1), so
// that callers can split the sites over threads without knowing W.
template <typename T, int W, typename F>
int dispatch(int n, int d, const int64_t* shape, F&& run) {
    if (d < 2 || d > MAX_D) return 2;
    int64_t sites = d;
    for (int mu = 0; mu < d; ++mu) sites *= shape[mu];
    if (sites >= (int64_t(1) << 31)) return 3;  // the 32-bit neighbour tables
    const Geometry& g = Geometry::cached(d, shape);
    switch (n) {
        case 1: run(Kernels<T, 1, W>(), g); return 0;
        case 2: run(Kernels<T, 2, W>(), g); return 0;
        case 3: run(Kernels<T, 3, W>(), g); return 0;
        default: return 1;
    }
}

template <typename T, int W>
int plaquette_trace_sum(int n, const T* u, T* out, int64_t batch, int d, const int64_t* shape, int64_t s0, int64_t s1) {
    return dispatch<T, W>(n, d, shape, [&](auto k, const Geometry& g) {
        decltype(k)::plaquette_trace_sum(u, out, batch, g, s0, s1);
    });
}

template <typename T, int W>
int staples(int n, const T* u, T* out, int64_t batch, int d, const int64_t* shape, int mu, int64_t s0, int64_t s1) {
    return dispatch<T, W>(n, d, shape, [&](auto k, const Geometry& g) {
        decltype(k)::staples(u, out, batch, g, mu, s0, s1);
    });
}

template <typename T, int W>
int projected_closed_staples(int n, const T* u, T* out, int64_t batch, int d, const int64_t* shape, T scale,
                             int traceless, int64_t s0, int64_t s1) {
    return dispatch<T, W>(n, d, shape, [&](auto k, const Geometry& g) {
        decltype(k)::projected_closed_staples(u, out, batch, g, scale, traceless != 0, s0, s1);
    });
}

}  // namespace

// SIMD lanes (sites per block), measured (docs/performance.md): the plaquette is fastest with 4 doubles (8 floats) per
// vector, the force and staples, which keep more matrices live, with 8 doubles (16 floats) where AVX-512 exists
#ifndef LGDIFF_W64
#define LGDIFF_W64 4
#define LGDIFF_W32 8
#endif
#ifndef LGDIFF_WIDE64
#if defined(__AVX512F__)
#define LGDIFF_WIDE64 8
#define LGDIFF_WIDE32 16
#else
#define LGDIFF_WIDE64 4
#define LGDIFF_WIDE32 8
#endif
#endif

extern "C" {

// Return codes: 0 done, 1 unsupported N, 2 unsupported D, 3 a configuration too large (D V >= 2^31). [s0, s1): the
// sites (of all B V) whose blocks this call computes.

int lgdiff_plaquette_trace_sum_f64(int n, const double* u, double* out, int64_t batch, int d, const int64_t* shape,
                                   int64_t s0, int64_t s1) {
    return plaquette_trace_sum<double, LGDIFF_W64>(n, u, out, batch, d, shape, s0, s1);
}
int lgdiff_plaquette_trace_sum_f32(int n, const float* u, float* out, int64_t batch, int d, const int64_t* shape,
                                   int64_t s0, int64_t s1) {
    return plaquette_trace_sum<float, LGDIFF_W32>(n, u, out, batch, d, shape, s0, s1);
}
int lgdiff_staples_f64(int n, const double* u, double* out, int64_t batch, int d, const int64_t* shape, int mu,
                       int64_t s0, int64_t s1) {
    return staples<double, LGDIFF_WIDE64>(n, u, out, batch, d, shape, mu, s0, s1);
}
int lgdiff_staples_f32(int n, const float* u, float* out, int64_t batch, int d, const int64_t* shape, int mu,
                       int64_t s0, int64_t s1) {
    return staples<float, LGDIFF_WIDE32>(n, u, out, batch, d, shape, mu, s0, s1);
}
int lgdiff_projected_closed_staples_f64(int n, const double* u, double* out, int64_t batch, int d,
                                        const int64_t* shape, double scale, int traceless, int64_t s0, int64_t s1) {
    return projected_closed_staples<double, LGDIFF_WIDE64>(n, u, out, batch, d, shape, scale, traceless, s0, s1);
}
int lgdiff_projected_closed_staples_f32(int n, const float* u, float* out, int64_t batch, int d,
                                        const int64_t* shape, float scale, int traceless, int64_t s0, int64_t s1) {
    return projected_closed_staples<float, LGDIFF_WIDE32>(n, u, out, batch, d, shape, scale, traceless, s0, s1);
}

}

// ---- scalar phi^4 (hopping form): S = sum_x [-2 kappa sum_mu phi(x) phi(x+mu) + (1 - 2 lam) phi^2 + lam phi^4] ----
// Fields [B, *L] real. Rows along the last axis (contiguous, vectorised by the compiler); the neighbours along the
// other axes are whole rows, and along the last axis i +- 1 with the two ends wrapped by hand.

namespace {

template <typename T>
struct Rows {
    int d;
    int64_t n, rows;  // n: extent of the last axis; rows: sites per configuration / n
    std::vector<int64_t> stride;
    const int64_t* shape;
    Rows(int d_, const int64_t* shape_) : d(d_), n(shape_[d_ - 1]), rows(1), stride(d_), shape(shape_) {
        int64_t s = 1;
        for (int mu = d - 1; mu >= 0; --mu) {
            stride[mu] = s;
            s *= shape[mu];
        }
        rows = s / n;
    }
    // offset of row r shifted by +-1 along axis mu < d - 1 (periodic), in sites
    int64_t shifted(int64_t r, int mu, int sign) const {
        const int64_t site = r * n;
        const int64_t x = (site / stride[mu]) % shape[mu];
        const int64_t xs = (x + sign + shape[mu]) % shape[mu];
        return site + (xs - x) * stride[mu];
    }
};

// Calls body(cfg, row, r, out_row, acc) for the rows [r0, r1) of B * rows: cfg the row's configuration, acc a
// scratch row for the neighbour sums
template <typename T, typename F>
void for_rows(const T* x, T* out, const Rows<T>& g, int64_t r0, int64_t r1, F&& body) {
    const int64_t n = g.n, volume = g.rows * n;
    std::vector<T> scratch(n);
    for (int64_t rr = r0; rr < r1; ++rr) {
        const int64_t b = rr / g.rows, r = rr % g.rows;
        const T* cfg = x + b * volume;
        body(cfg, cfg + r * n, r, out + b * volume + r * n, scratch.data());
    }
}

// out = sign dS/dphi = sign (-2 kappa sum_mu [phi(x+mu) + phi(x-mu)] + 2 (1 - 2 lam) phi + 4 lam phi^3), sign = +-1
// (-1: the HMC force, without a second pass to negate), rows [r0, r1) of B * rows
template <typename T>
void phi4_gradient(const T* x, T* out, int d, const int64_t* shape, T kappa, T lam, T sign, int64_t r0, int64_t r1) {
    const Rows<T> g(d, shape);
    const int64_t n = g.n;
    const T c2 = sign * 2 * (1 - 2 * lam), c4 = sign * 4 * lam, hop = sign * -2 * kappa;
    for_rows(x, out, g, r0, r1, [&](const T* cfg, const T* row, int64_t r, T* o, T* acc) {
        if (n == 1) {  // neighbours along the last axis
            acc[0] = 2 * row[0];
        } else {
            acc[0] = row[1] + row[n - 1];
            for (int64_t i = 1; i < n - 1; ++i) acc[i] = row[i + 1] + row[i - 1];
            acc[n - 1] = row[0] + row[n - 2];
        }
        for (int mu = 0; mu < d - 1; ++mu) {  // whole neighbouring rows along the other axes
            const T* up = cfg + g.shifted(r, mu, +1);
            const T* dn = cfg + g.shifted(r, mu, -1);
            for (int64_t i = 0; i < n; ++i) acc[i] += up[i] + dn[i];
        }
        for (int64_t i = 0; i < n; ++i) {
            const T v = row[i];
            o[i] = v * (c2 + c4 * v * v) + hop * acc[i];
        }
    });
}

// out = the action density -2 kappa phi sum_mu phi(x+mu) + (1 - 2 lam) phi^2 + lam phi^4, rows [r0, r1)
template <typename T>
void phi4_density(const T* x, T* out, int d, const int64_t* shape, T kappa, T lam, int64_t r0, int64_t r1) {
    const Rows<T> g(d, shape);
    const int64_t n = g.n;
    const T c2 = 1 - 2 * lam, hop = -2 * kappa;
    for_rows(x, out, g, r0, r1, [&](const T* cfg, const T* row, int64_t r, T* o, T* acc) {
        for (int64_t i = 0; i < n - 1; ++i) acc[i] = row[i + 1];
        acc[n - 1] = row[0];
        for (int mu = 0; mu < d - 1; ++mu) {
            const T* up = cfg + g.shifted(r, mu, +1);
            for (int64_t i = 0; i < n; ++i) acc[i] += up[i];
        }
        for (int64_t i = 0; i < n; ++i) {
            const T v = row[i], v2 = v * v;
            o[i] = hop * v * acc[i] + c2 * v2 + lam * v2 * v2;
        }
    });
}

// One checkerboard Metropolis sweep (Metropolis.step's arithmetic, site by site) of the configurations [b0, b1):
// for each colour (even, then odd sum of coordinates) every site of that colour takes `hits` proposals
// phi + step (2 u - 1), accepted when log_r < s_old - s_new with s the local action
// -2 kappa phi n + (1 - 2 lam) phi^2 + lam phi^4 and n the neighbour sum (fixed during the colour: the neighbours
// have the other colour). u and log_r are [hits, B, V]; accepted[b] counts the accepted proposals.
template <typename T>
void phi4_metropolis(T* x, const T* u, const T* log_r, T* accepted, int64_t batch, int d, const int64_t* shape,
                     T kappa, T lam, T step, int hits, int64_t b0, int64_t b1) {
    const Rows<T> g(d, shape);
    const int64_t n = g.n, volume = g.rows * n;
    const T c2 = 1 - 2 * lam, hop = -2 * kappa;
    auto local = [&](T v, T nb) { const T v2 = v * v; return hop * v * nb + c2 * v2 + lam * v2 * v2; };
    for (int64_t b = b0; b < b1; ++b) {
        T* cfg = x + b * volume;
        T count = 0;
        for (int colour = 0; colour < 2; ++colour) {
            for (int64_t r = 0; r < g.rows; ++r) {
                int64_t parity = 0;  // of the row's coordinates along the axes 0..d-2
                for (int mu = 0; mu < d - 1; ++mu) parity += (r * n / g.stride[mu]) % shape[mu];
                T* row = cfg + r * n;
                const T* up[MAX_D];
                const T* dn[MAX_D];
                for (int mu = 0; mu < d - 1; ++mu) {
                    up[mu] = cfg + g.shifted(r, mu, +1);
                    dn[mu] = cfg + g.shifted(r, mu, -1);
                }
                for (int64_t i = (colour + parity) % 2; i < n; i += 2) {
                    T nb = row[i + 1 == n ? 0 : i + 1] + row[i == 0 ? n - 1 : i - 1];
                    for (int mu = 0; mu < d - 1; ++mu) nb += up[mu][i] + dn[mu][i];
                    T v = row[i];
                    T s_old = local(v, nb);
                    for (int h = 0; h < hits; ++h) {
                        const int64_t k = (int64_t(h) * batch + b) * volume + r * n + i;
                        const T proposal = v + step * (2 * u[k] - 1);
                        const T s_new = local(proposal, nb);
                        if (log_r[k] < s_old - s_new) {
                            v = proposal;
                            s_old = s_new;
                            count += 1;
                        }
                    }
                    row[i] = v;
                }
            }
        }
        accepted[b] = count;
    }
}

}  // namespace

extern "C" {

// Rows: B * prod(L[:-1]); [r0, r1) is the range one call computes.
void lgdiff_phi4_gradient_f64(const double* x, double* out, int d, const int64_t* shape, double kappa,
                              double lam, double sign, int64_t r0, int64_t r1) {
    phi4_gradient<double>(x, out, d, shape, kappa, lam, sign, r0, r1);
}
void lgdiff_phi4_gradient_f32(const float* x, float* out, int d, const int64_t* shape, float kappa,
                              float lam, float sign, int64_t r0, int64_t r1) {
    phi4_gradient<float>(x, out, d, shape, kappa, lam, sign, r0, r1);
}
void lgdiff_phi4_density_f64(const double* x, double* out, int d, const int64_t* shape, double kappa,
                             double lam, int64_t r0, int64_t r1) {
    phi4_density<double>(x, out, d, shape, kappa, lam, r0, r1);
}
void lgdiff_phi4_metropolis_f64(double* x, const double* u, const double* log_r, double* accepted, int64_t batch,
                                int d, const int64_t* shape, double kappa, double lam, double step, int hits,
                                int64_t b0, int64_t b1) {
    phi4_metropolis<double>(x, u, log_r, accepted, batch, d, shape, kappa, lam, step, hits, b0, b1);
}
void lgdiff_phi4_metropolis_f32(float* x, const float* u, const float* log_r, float* accepted, int64_t batch, int d,
                                const int64_t* shape, float kappa, float lam, float step, int hits, int64_t b0,
                                int64_t b1) {
    phi4_metropolis<float>(x, u, log_r, accepted, batch, d, shape, kappa, lam, step, hits, b0, b1);
}
void lgdiff_phi4_density_f32(const float* x, float* out, int d, const int64_t* shape, float kappa,
                             float lam, int64_t r0, int64_t r1) {
    phi4_density<float>(x, out, d, shape, kappa, lam, r0, r1);
}

}
