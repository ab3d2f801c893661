"""Human3.6M: 4-view frames of the official release, masks from its background subtraction."""
