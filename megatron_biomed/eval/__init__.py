"""Evaluation: perplexity per corpus, biomedical benchmarks by log-likelihood, fine-tuned heads."""
