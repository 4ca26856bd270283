"""The LGSP hub: an aiohttp service that verifies, stores and routes edXML packages over mutual TLS.

Build it with :func:`gateway.hub.app.create_app`; run it with ``gateway hub serve`` (:mod:`.server`).
Nothing here runs or allocates at import time.
"""
