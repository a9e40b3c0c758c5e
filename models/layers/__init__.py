"""Building blocks shared by the models (embeddings, FFNs, mixers, hyperbolic toolkit)."""
