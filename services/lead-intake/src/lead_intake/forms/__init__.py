"""The form registry: definitions, embed.js, CORS and rate limits per form."""
