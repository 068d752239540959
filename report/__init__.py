"""The report generator: result CSVs -> a Markdown report with figures and statistics."""
