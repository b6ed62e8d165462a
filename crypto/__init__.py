"""The bytes that are signed and hashed.

Canonical encoding, SHA-256 helpers, RFC 6962 Merkle trees, Ed25519 keys with
domain-separated signatures, and encrypted key files. Everything here is
deterministic; nothing here knows about blocks, consensus or the network.
"""
