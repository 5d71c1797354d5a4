// Limits shared by the GGUF reader, writer and export (not part of the API).
#ifndef LC_GGUF_INTERNAL_H
#define LC_GGUF_INTERNAL_H

#define GGUF_MAX_KEY 65535u  // the specification's limit on key length
#define GGUF_MAX_NAME 63u    // tensor names: llama.cpp's GGML_MAX_NAME is 64 with the NUL
#define GGUF_JSON_MAX (512u << 20)

#endif
