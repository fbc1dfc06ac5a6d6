"""Ids of the byte-level vocabulary's special tokens (ids 0-255 are raw UTF-8 bytes).

Kept free of torch so the router and load tools can tokenize without importing the model.
"""

BOS_ID = 256
EOS_ID = 257
PAD_ID = 258

NUM_TOKENIZER_IDS = 259
"""Ids the byte-level tokenizer can produce (256 bytes + BOS, EOS, PAD): the ids a prompt may hold
for a model with this tokenizer (its embedding may have more rows, as padding)."""
