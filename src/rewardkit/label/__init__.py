"""Collecting human feedback: a labelling database (`store`), the web app annotators use (`app`), active selection
of what to label (`selection`), inter-annotator agreement (`agreement`), and import/export to train-rm data."""
