/* The GPT-2 vocabulary built into libmiser: data/gpt2/encoder.json and
 * data/gpt2/vocab.bpe embedded verbatim, so an installed binary needs no data
 * files. .incbin paths resolve against the compiler's working directory, which
 * the Makefile keeps at the repository root. Symbols are hidden: internal to
 * the library, not part of its ABI. */
    .section .rodata.miser_gpt2, "a", @progbits
    .balign 16
    .globl miser_gpt2_encoder_json
    .hidden miser_gpt2_encoder_json
    .type miser_gpt2_encoder_json, @object
miser_gpt2_encoder_json:
    .incbin "data/gpt2/encoder.json"
miser_gpt2_encoder_json_end_:
    .size miser_gpt2_encoder_json, . - miser_gpt2_encoder_json
    .byte 0

    .balign 16
    .globl miser_gpt2_vocab_bpe
    .hidden miser_gpt2_vocab_bpe
    .type miser_gpt2_vocab_bpe, @object
miser_gpt2_vocab_bpe:
    .incbin "data/gpt2/vocab.bpe"
miser_gpt2_vocab_bpe_end_:
    .size miser_gpt2_vocab_bpe, . - miser_gpt2_vocab_bpe
    .byte 0

/* Lengths as 64-bit values for the C side (the trailing NUL not counted). */
    .balign 8
    .globl miser_gpt2_encoder_json_len
    .hidden miser_gpt2_encoder_json_len
    .type miser_gpt2_encoder_json_len, @object
miser_gpt2_encoder_json_len:
    .quad miser_gpt2_encoder_json_end_ - miser_gpt2_encoder_json
    .size miser_gpt2_encoder_json_len, 8
    .globl miser_gpt2_vocab_bpe_len
    .hidden miser_gpt2_vocab_bpe_len
    .type miser_gpt2_vocab_bpe_len, @object
miser_gpt2_vocab_bpe_len:
    .quad miser_gpt2_vocab_bpe_end_ - miser_gpt2_vocab_bpe
    .size miser_gpt2_vocab_bpe_len, 8

    .section .note.GNU-stack, "", @progbits
