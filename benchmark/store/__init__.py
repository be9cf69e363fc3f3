"""The result store: one JSON cell per grid cell, validated by its shape on read (``results``),
the checks every command makes on its arguments (``validate``), the backends that fan cells out
(``backends``: joblib/loky or Dask) and the ``.npz`` embedding files a user brings (``embeddings_file``)."""
