"""What happens when things go wrong: endpoints, answers, files, input, secrets, fuzzing."""
