"""Research one-offs on fine-tuned MLLM folders, kept out of the main API and command list
(``hlmat research average`` / ``hlmat research deepen``): a uniform weight average (a model soup) and
identity-initialised extra layers."""
