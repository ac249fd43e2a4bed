"""Development harnesses that drive the product against the OLVM simulator; not part of the product."""
