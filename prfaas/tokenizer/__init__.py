"""Tokenization, torch-free: the byte-level vocabulary (special ids, encoder, streaming decoder, its
Hugging Face export and tokenizer directory, `prfaas tokenizer export`) and a checkpoint
directory's own tokenizer and chat template.

The router tokenizes with it and never imports the model package; the model takes its vocabulary
ids from here.
"""
