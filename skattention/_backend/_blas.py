"""General matrix products on strided row-major views, callable from kernels.

``np.dot`` inside a Numba kernel only takes contiguous arrays (it copies any
other view first), always overwrites its output and cannot transpose without
a copy of a non-contiguous operand. :func:`gemm` calls the same BLAS
``?gemm`` that Numba's ``np.dot`` calls (SciPy's, through Numba's helper
library symbol ``numba_xxgemm``, so compiled callers stay cacheable), with
the full interface: row strides, transposes, ``alpha`` and ``beta``. That
lets kernels read the heads of a packed ``(N, 3 * d)`` projection in place,
accumulate a product into an existing output (``beta = 1``) and write into
column blocks of a larger matrix.

Row-major ``C = A B`` is column-major ``C^T = B^T A^T``, and a row-major
``(r, c)`` view with row stride ``s`` is a column-major ``(c, r)`` matrix with
leading dimension ``s``: so the call swaps the operands and passes the row
strides as leading dimensions, without copying anything.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import jit

__all__ = ["gemm"]

_TRANS = ord("t")
_NO_TRANS = ord("n")


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``c = alpha op(a) op(b) + beta c`` by ``numba_xxgemm``.

    ``a``, ``b``, ``c`` are arrays of one float dtype (their data pointers are
    passed, whatever their layout); ``alpha`` and ``beta`` are scalars of that
    dtype; the rest are integers as BLAS defines them. Returns BLAS's status
    (0 on success).
    """
    if not all(isinstance(t, types.Array) for t in (a, b, c)):
        return None
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.intc(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        (transa_v, transb_v, m_v, n_v, k_v, alpha_v, a_v, lda_v, b_v, ldb_v, beta_v, c_v,
         ldc_v) = args
        argtys = signature.args
        char, intp = ir.IntType(8), context.get_value_type(types.intp)
        void_p = cgutils.voidptr_t
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, void_p,
                                                void_p, intp, void_p, intp, void_p, void_p,
                                                intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        llty = context.get_value_type(dtype)

        def scalar_slot(value, ty):
            slot = cgutils.alloca_once(builder, llty)
            builder.store(context.cast(builder, value, ty, dtype), slot)
            return builder.bitcast(slot, void_p)

        def data(value, ty):
            return builder.bitcast(context.make_array(ty)(context, builder, value).data, void_p)

        def as_intp(value, ty):
            return context.cast(builder, value, ty, types.intp)

        def as_char(value, ty):
            return builder.trunc(context.cast(builder, value, ty, types.intp), char)

        kind = ir.Constant(char, ord("s" if dtype == types.float32 else "d"))
        return builder.call(fn, (
            kind, as_char(transa_v, argtys[0]), as_char(transb_v, argtys[1]),
            as_intp(m_v, argtys[2]), as_intp(n_v, argtys[3]), as_intp(k_v, argtys[4]),
            scalar_slot(alpha_v, argtys[5]), data(a_v, argtys[6]), as_intp(lda_v, argtys[7]),
            data(b_v, argtys[8]), as_intp(ldb_v, argtys[9]), scalar_slot(beta_v, argtys[10]),
            data(c_v, argtys[11]), as_intp(ldc_v, argtys[12])))

    return sig, codegen


@jit()
def _row_stride(x):
    """Leading dimension of a 2D row-major view (elements between rows).

    A view with one row (or none) gets its column count, the smallest value
    BLAS accepts; any other must have unit column stride.
    """
    rows, cols = x.shape
    if rows <= 1:
        return max(cols, 1)
    if x.strides[1] != x.itemsize and cols > 1:
        raise ValueError("gemm needs unit stride along the last axis")
    stride = x.strides[0] // x.itemsize
    if stride < max(cols, 1):
        raise ValueError("gemm needs rows that do not overlap")
    return stride


@jit()
def gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """``c = alpha * op(a) @ op(b) + beta * c`` on row-major strided views.

    Parameters
    ----------
    a : ndarray of shape (M, K), or (K, M) with ``trans_a``
    b : ndarray of shape (K, N), or (N, K) with ``trans_b``
    c : ndarray of shape (M, N)
        Output, updated in place; may be a view into a larger array (a block
        of columns, the heads of a packed projection).
    trans_a, trans_b : bool, default=False
        Use the transpose of ``a`` / ``b`` (no copy is made).
    alpha, beta : float, default=1.0 and 0.0
        With ``beta = 0``, ``c`` is only written (its old values, even NaN,
        are ignored).

    Notes
    -----
    All three arrays share one float dtype (float32 or float64) and have unit
    stride along their last axis (a one-row view may have any stride). The
    product runs on however many threads the BLAS has: callers inside
    ``prange`` loops hold it at one (see :mod:`._threads`).
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    a_rows = a.shape[1] if trans_a else a.shape[0]
    b_cols = b.shape[0] if trans_b else b.shape[1]
    b_inner = b.shape[1] if trans_b else b.shape[0]
    if a_rows != m or b_cols != n or b_inner != k:
        raise ValueError("gemm: operand shapes do not match")
    if m == 0 or n == 0:
        return
    if k == 0:
        # BLAS would scale c by beta; spelled out so that beta = 0 also
        # clears NaN.
        for i in range(m):
            for j in range(n):
                c[i, j] = 0 if beta == 0 else c[i, j] * beta
        return
    dt = c.dtype.type
    status = _xxgemm(_TRANS if trans_b else _NO_TRANS, _TRANS if trans_a else _NO_TRANS,
                     n, m, k, dt(alpha), b, _row_stride(b), a, _row_stride(a), dt(beta), c,
                     _row_stride(c))
    if status != 0:
        raise RuntimeError("BLAS ?gemm failed")
