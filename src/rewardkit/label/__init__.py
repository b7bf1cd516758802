"""Collecting human feedback: a labelling database (`store`), the web app annotators use (`app`), active selection
of what to label (`selection`), inter-annotator agreement (`agreement`), import/export to train-rm data, and what each
kind of feedback asks of them (`tasks`)."""
