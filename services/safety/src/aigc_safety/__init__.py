"""The safety service: bilingual rule packs over normalised text, PII redaction and streaming
output moderation with a hold-back window. The core (:mod:`aigc_safety.core`) has no gRPC."""
