"""The toy world: the embedded demo data and closed-loop test bed, its export to native formats, the demo."""
