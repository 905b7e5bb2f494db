"""Data Engine: raw race data -> model tensors, the same code for dataset building and the gateway.

Modules, one concern each: align (lap -> 100 distance steps), stack (lap-slot rules, stacking),
tactical (neighbour encoding), fuel (fuel model), fastf1_reader (race folders and FastF1 sessions),
labels (training labels), engine (one car -> model inputs), dataset (build / load datasets).
See docs/data-engine.md.
"""
