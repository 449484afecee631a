# Puts the repository root on sys.path so that tests import `configs`, `vidjax` and `input_pipeline`.
