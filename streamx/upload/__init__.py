"""The upload pipeline: source → parts → bounded queue → uploaders → completer → result."""
