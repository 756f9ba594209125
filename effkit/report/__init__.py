"""Tables, files and (later) figures and HTML for results of the earlier stages."""
