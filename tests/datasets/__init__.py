"""Tests of the generated and shipped data sets, task sequences and label noise."""
