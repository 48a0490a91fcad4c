"""Object stores behind one transaction interface."""
