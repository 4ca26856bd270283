"""edXML: the model, codes, parsing, building and the two carriage forms. Pure: no I/O, no network."""
