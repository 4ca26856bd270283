"""Trust: a real PKI (:mod:`.pki`), the trust store that validates signers (:mod:`.store`), and the agency
directory (:mod:`.directory`). Pure core: no aiohttp, no database; files are read only by explicit loaders."""
