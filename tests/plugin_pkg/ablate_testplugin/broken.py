raise ImportError("needs the flux capacitor")
