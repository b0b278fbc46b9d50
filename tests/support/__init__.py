"""What the tests share besides fixtures: throwaway databases, child processes, fault servers."""
