# Argument conversions shared by the compiled modules (included, so each
# module has its own copy of these small inline functions).

cdef double TIMEOUT_MAX = threading.TIMEOUT_MAX

cdef object ONE = 1  # the interpreter's cached small int: the default count


cdef fs_time _deadline(object timeout) except? -1:
    """Absolute monotonic deadline for `timeout` seconds; errors as threading's."""
    cdef double seconds = timeout  # TypeError for a non-number
    if isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    if seconds > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    # threading.Semaphore treats a negative timeout as an immediate attempt.
    return fs_deadline_after(seconds)


cdef inline fs_count _as_count(object n) except? -1:
    """A permit count: an int or an object with __index__ (never a float)."""
    if n is ONE:
        return 1
    if PyLong_CheckExact(n):
        return n  # OverflowError past the C range
    return PyNumber_Index(n)
