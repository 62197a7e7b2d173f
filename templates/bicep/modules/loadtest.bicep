// Azure Load Testing: where `emrops loadtest cloud` runs tests that outgrow one generator.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Load testing resource name.')
param name string

resource loadTest 'Microsoft.LoadTestService/loadTests@2022-12-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    description: 'EMRsim load tests (emrops loadtest cloud)'
  }
}

@description('Data-plane URI of the resource (emrops loadtest cloud --endpoint).')
output dataPlaneUri string = loadTest.properties.dataPlaneURI
