"""The verification protocol, embedding caches and the benchmark that runs encoders through them."""
