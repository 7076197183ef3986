"""Terminal actors: pairing, links, and the money rules of design.md §3."""
