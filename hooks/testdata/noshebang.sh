echo this file has no interpreter line
