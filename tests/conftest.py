from lpft import numeric

# The book's numeric environment (lpft.numeric: kernel paths, one thread) for every process the tests start: the
# pytest-xdist workers, the kernels pytest-notebook starts and the workers they spawn inherit it.
numeric.pin()
