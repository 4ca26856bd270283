"""The agency node: signs and sends dispatches through the hub's public API, receives and verifies those
addressed to its agency, answers with status messages, and hands documents to the DMS (docs/node.md)."""
