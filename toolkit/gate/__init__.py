"""``asrtk gate``'s pure core: threshold expressions, noise-aware comparison, the verdict and
the files CI systems read (JUnit XML, Markdown, JSON). Data in, data out: the orchestrator that
runs load and reads run directories is ``toolkit.runs.gate``."""
