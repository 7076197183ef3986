"""The sans-IO core of the Wonder ECR protocol: crypto, envelope, RS232 frames.

Nothing in this package does I/O or imports trio, httpx or serial (design.md §1).
"""
